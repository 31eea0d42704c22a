"""The Settings window: pages built from the declared schema (engine.settings),
plus the Model page (quantizations with fit badges and downloads; its rows:
``ui.quant_rows``).

It renders and asks: an edit emits ``setting_changed(key, value)`` and the
controller validates, saves and applies it; anything that needs engine work
(a memory estimate, the list of quantizations) is handed in as data or as a
callable, never computed here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from enum import StrEnum
from pathlib import Path

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QStackedWidget,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from engine.models.choice import AUTO
from engine.settings import SCHEMA, Value
from ui.quant_rows import COLUMNS, GPU_COL, MEMORY_COL, SPEED_COL, QuantRow, quant_item
from ui.settings_editors import SettingEditor
from ui.settings_serve import ServeSection
from ui.theme import mute
from ui.vision_toggle import NO_VISION_KEY, VisionToggle

PAGES = (
    ("model", "Model"),
    ("generation", "Generation"),
    ("performance", "Performance"),
    ("storage", "Privacy & storage"),
    ("appearance", "Appearance"),
    ("serve", "Other programs"),
)


class Folder(StrEnum):
    """A folder the person can open or move from the Privacy & storage page."""

    CHATS = "chats"
    MODELS = "models"


# Settings chosen elsewhere (the Model page's list, the first-run offer).
# (model.path: chosen from the Model page's "Your own model files", never typed in)
_NOT_ON_A_PAGE = (
    "model.family",
    "model.quant",
    "model.offer_dismissed",
    "model.path",
    "model.remote_connection",  # chosen from the Model page's connections (issue 15)
    "model.remote_model",
    "model.no_vision",  # the Model page's "Let it see images" switch (ui/vision_toggle.py)
    "storage.models_dir",
    "storage.chats_dir",
    "storage.encrypt_offer_at",  # the strip's answers (issue 17)
)


class SettingsDialog(QDialog):
    setting_changed = Signal(str, object)
    quant_selected = Signal(str, str)  # family id, quantization name or "auto"
    family_selected = Signal(str)  # family id: show its quantizations
    delete_model_requested = Signal(str, str)  # family id, quantization name
    download_cancel_requested = Signal()
    reload_requested = Signal()
    open_folder_requested = Signal(str)  # Folder
    move_models_requested = Signal(str)  # the folder the person picked
    move_chats_requested = Signal(str)  # the folder the person picked
    import_requested = Signal(str)  # a .gguf file the person picked
    token_set_requested = Signal(str)
    token_clear_requested = Signal()
    delete_all_chats_requested = Signal()
    measure_requested = Signal()  # measure the memory speed again

    def __init__(
        self,
        values: dict[str, Value],
        *,
        gpu_offload: bool,
        estimate: Callable[[int | None], str] | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("settings_dialog")
        self.setWindowTitle("Settings")
        self.resize(860, 600)
        self._estimate = estimate
        self.editors: dict[str, SettingEditor] = {}
        self.pages = QListWidget()
        self.pages.setObjectName("settings_pages")
        self.pages.setAccessibleName("Settings pages")
        self.pages.setFixedWidth(170)
        self.stack = QStackedWidget()
        for page_id, title in PAGES:
            self.pages.addItem(title)
            self.stack.addWidget(self._build_page(page_id, values, gpu_offload))
        self.pages.currentRowChanged.connect(self.stack.setCurrentIndex)
        self.pages.setCurrentRow(0)
        self.reload_notice = QLabel("")
        self.reload_notice.setObjectName("reload_notice")
        self.reload_notice.setWordWrap(True)
        self.reload_button = QPushButton("Reload model now")
        self.reload_button.setObjectName("reload_button")
        self.reload_button.clicked.connect(self.reload_requested)
        self.set_reload_pending(False)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        bottom = QHBoxLayout()
        bottom.addWidget(self.reload_notice, 1)
        bottom.addWidget(self.reload_button)
        bottom.addWidget(buttons)
        body = QHBoxLayout()
        body.addWidget(self.pages)
        body.addWidget(self.stack, 1)
        layout = QVBoxLayout(self)
        layout.addLayout(body, 1)
        layout.addLayout(bottom)
        # Enter belongs to the focused control (Enter on a quantization uses it), never
        # to whichever button a dialog would make its default.
        for button in self.findChildren(QPushButton):
            button.setAutoDefault(False)
            button.setDefault(False)

    def add_page(self, page_id: str, title: str, widget: QWidget, *, after: str = "") -> None:
        """A page built elsewhere (e.g. ui/settings_connections.py), after ``after``'s."""
        page = QWidget()
        page.setObjectName(f"page:{page_id}")
        QVBoxLayout(page).addWidget(widget)
        index = self.stack.count()
        for i in range(self.stack.count()):
            existing = self.stack.widget(i)
            if existing is not None and existing.objectName() == f"page:{after}":
                index = i + 1
        self.pages.insertItem(index, title)
        self.stack.insertWidget(index, page)
        for button in widget.findChildren(QPushButton):  # Enter stays the control's
            button.setAutoDefault(False)
            button.setDefault(False)

    # --- pages ------------------------------------------------------------------------
    def _build_page(self, page_id: str, values: dict[str, Value], gpu: bool) -> QWidget:
        page = QWidget()
        page.setObjectName(f"page:{page_id}")
        outer = QVBoxLayout(page)
        if page_id == "model":
            outer.addWidget(self._build_model_section())
        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        for spec in SCHEMA:
            if spec.page != page_id or spec.key in _NOT_ON_A_PAGE:
                continue
            if spec.key == "performance.gpu_layers" and not gpu:
                continue  # this build cannot offload: no control that does nothing
            editor = SettingEditor(spec, values.get(spec.key, spec.default))
            editor.edited.connect(self._on_edited)
            self.editors[spec.key] = editor
            label = spec.label + (" ↻" if spec.reload else "")
            form.addRow(label, editor)
            if spec.key == "performance.n_ctx":
                self.memory_estimate = QLabel("")
                self.memory_estimate.setObjectName("memory_estimate")
                form.addRow("", self.memory_estimate)
                if isinstance(editor.widget, QSpinBox):  # follows the spin box as it moves
                    editor.widget.valueChanged.connect(self._update_estimate)
                self._update_estimate(values.get(spec.key))
        outer.addLayout(form)
        if page_id == "storage":
            outer.addWidget(self._build_storage_section())
        if page_id == "serve":  # the local API's state and key (app/serve_window.py)
            self.serve_section = ServeSection()
            outer.addWidget(self.serve_section)
        if page_id == "performance":
            hint = QLabel("↻ takes effect when the model reloads.")
            mute(hint)
            outer.addWidget(hint)
        outer.addStretch(1)
        return page

    def _build_model_section(self) -> QWidget:
        box = QWidget()
        layout = QVBoxLayout(box)
        layout.setContentsMargins(0, 0, 0, 0)
        self.model_title = QLabel("")
        self.model_title.setObjectName("model_title")
        self.model_title.setWordWrap(True)
        self.family_combo = QComboBox()
        self.family_combo.setObjectName("family_combo")
        self.family_combo.setAccessibleName("Model family")
        self.family_combo.activated.connect(
            lambda i: self.family_selected.emit(str(self.family_combo.itemData(i)))
        )
        family_row = QHBoxLayout()
        family_row.addWidget(QLabel("Model"))
        family_row.addWidget(self.family_combo, 1)
        self.quants = QTreeWidget()
        self.quants.setObjectName("quant_list")
        self.quants.setAccessibleName("Quantizations")
        self.quants.setHeaderLabels(list(COLUMNS))
        self.quants.setColumnHidden(GPU_COL, True)
        self.quants.setColumnHidden(SPEED_COL, True)
        self.quants.setRootIsDecorated(False)
        self.quants.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.quants.itemActivated.connect(self._on_quant_activated)
        self.quants.currentItemChanged.connect(self._update_quant_buttons)
        self.use_quant = QPushButton("Use this quantization")
        self.use_quant.setObjectName("use_quant_button")
        self.use_quant.clicked.connect(
            lambda: self._on_quant_activated(self.quants.currentItem(), 0)
        )
        self.delete_quant = QPushButton("Delete file…")
        self.delete_quant.setObjectName("delete_quant_button")
        self.delete_quant.setAccessibleName("Delete the selected model file")
        self.delete_quant.clicked.connect(self._on_delete_clicked)
        self.import_button = QPushButton("Import a .gguf file…")
        self.import_button.setObjectName("import_model_button")
        self.import_button.clicked.connect(self._on_import_clicked)
        buttons = QHBoxLayout()
        buttons.addWidget(self.import_button)
        buttons.addStretch(1)
        buttons.addWidget(self.delete_quant)
        buttons.addWidget(self.use_quant)
        self.download_bar = QProgressBar()
        self.download_bar.setObjectName("download_progress")
        self.download_label = QLabel("")
        self.download_label.setObjectName("download_status")
        self.download_label.setWordWrap(True)
        self.cancel_download = QPushButton("Cancel download")
        self.cancel_download.setObjectName("cancel_download_button")
        self.cancel_download.clicked.connect(self.download_cancel_requested)
        row = QHBoxLayout()
        row.addWidget(self.download_bar, 1)
        row.addWidget(self.cancel_download)
        self.auto_reason = QLabel("")
        self.auto_reason.setObjectName("auto_reason")
        self.auto_reason.setWordWrap(True)
        self.speed_note = QLabel("")
        self.speed_note.setObjectName("speed_note")
        self.speed_note.setWordWrap(True)
        mute(self.speed_note)  # a note on the figures, not a message
        self.measure_button = QPushButton("Measure again")
        self.measure_button.setObjectName("measure_speed_button")
        self.measure_button.setAccessibleName("Measure this computer's memory speed again")
        self.measure_button.clicked.connect(self.measure_requested)
        speed_row = QHBoxLayout()
        speed_row.addWidget(self.speed_note, 1)
        speed_row.addWidget(self.measure_button)
        layout.addLayout(family_row)
        layout.addWidget(self.model_title)
        layout.addWidget(self.quants, 1)
        layout.addWidget(self.auto_reason)
        self.vision_toggle = VisionToggle()  # app/model_page.py shows it for the model in use
        self.vision_toggle.no_vision_changed.connect(
            lambda value: self.setting_changed.emit(NO_VISION_KEY, value)
        )
        layout.addWidget(self.vision_toggle)
        layout.addLayout(speed_row)
        layout.addLayout(buttons)
        layout.addWidget(self.download_label)
        layout.addLayout(row)
        self.show_download(None)
        return box

    def _build_storage_section(self) -> QWidget:
        box = QWidget()
        layout = QVBoxLayout(box)
        layout.setContentsMargins(0, 8, 0, 0)
        folders = QFormLayout()
        self.folder_labels: dict[Folder, QLabel] = {}
        for which, text in ((Folder.CHATS, "Chats folder"), (Folder.MODELS, "Models folder")):
            path = QLabel("")
            path.setObjectName(f"{which}_folder_path")
            path.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            path.setWordWrap(True)
            self.folder_labels[which] = path
            button = QPushButton("Open")
            button.setObjectName(f"open_{which}_folder")
            button.setAccessibleName(f"Open the {text.lower()}")
            button.clicked.connect(lambda _=False, w=which: self.open_folder_requested.emit(w))
            row = QHBoxLayout()
            row.addWidget(path, 1)
            row.addWidget(button)
            move = QPushButton("Move…")
            move.setObjectName(f"move_{which}_button")
            move.setAccessibleName(f"Move the {text.lower()}")
            move.clicked.connect(lambda _=False, w=which: self._on_move(w))
            row.addWidget(move)
            folders.addRow(text, row)
        self.token_status = QLabel("")
        self.token_status.setObjectName("token_status")
        self.token_status.setWordWrap(True)
        self.token_edit = QLineEdit()
        self.token_edit.setObjectName("token_edit")
        self.token_edit.setAccessibleName("Hugging Face token")
        self.token_edit.setEchoMode(QLineEdit.EchoMode.Password)
        self.token_edit.setPlaceholderText("hf_… (needed only for gated models)")
        save_token = QPushButton("Save token")
        save_token.setObjectName("save_token_button")
        save_token.clicked.connect(self._on_save_token)
        clear_token = QPushButton("Forget token")
        clear_token.setObjectName("clear_token_button")
        clear_token.clicked.connect(self.token_clear_requested)
        token_row = QHBoxLayout()
        token_row.addWidget(self.token_edit, 1)
        token_row.addWidget(save_token)
        token_row.addWidget(clear_token)
        delete_all = QPushButton("Delete all chats…")
        delete_all.setObjectName("delete_all_chats_button")
        delete_all.clicked.connect(self.delete_all_chats_requested)
        layout.addLayout(folders)
        layout.addWidget(QLabel("Hugging Face token (kept in your system's keyring)"))
        layout.addLayout(token_row)
        layout.addWidget(self.token_status)
        layout.addWidget(delete_all, 0, Qt.AlignmentFlag.AlignLeft)
        return box

    # --- what the controller shows ---------------------------------------------------
    def set_families(self, families: list[tuple[str, str]], current: str) -> None:
        """The model families to choose from: (id, name)."""
        combo = self.family_combo
        blocked = combo.blockSignals(True)
        combo.clear()
        for family_id, name in families:
            combo.addItem(name, family_id)
        combo.setCurrentIndex(max(0, combo.findData(current)))
        combo.blockSignals(blocked)

    def set_model(
        self,
        title: str,
        rows: list[QuantRow],
        current: str,
        family_name: str = "",
        *,
        with_auto: bool = True,
    ) -> None:
        """The quantizations of the family shown; ``current`` is the one chosen ("" if
        the family shown is not the chosen one)."""
        self.model_title.setText(title)
        self._rows = {row.name: row for row in rows}
        selected = self.quants.currentItem()
        keep = selected.data(0, Qt.ItemDataRole.UserRole) if selected is not None else None
        self.quants.clear()
        best = next((r for r in rows if r.recommended), None)
        auto_text = "Auto" + (f": {best.label or best.name}" if best else "")
        auto = QTreeWidgetItem(["" for _ in COLUMNS])
        auto.setText(0, auto_text)  # (the tooltip says what Auto is)
        auto.setData(0, Qt.ItemDataRole.UserRole, AUTO)
        reason = best.reason if best is not None else ""
        auto.setToolTip(
            0,
            reason
            or f"Recommended for this computer: the best {family_name or 'model'} file that fits.",
        )
        if with_auto:
            self.quants.addTopLevelItem(auto)
        self.auto_reason.setText(f"Auto picks {reason}" if with_auto and reason else "")
        self.auto_reason.setVisible(bool(self.auto_reason.text()))
        gpu = any(r.gpu_bytes is not None for r in rows)
        server = bool(rows) and all(r.remote for r in rows)  # a connection's models
        self.quants.headerItem().setText(0, "Model" if server else COLUMNS[0])
        self.measure_button.setVisible(not server)
        self.quants.setColumnHidden(GPU_COL, not gpu)
        self.quants.headerItem().setText(MEMORY_COL, "RAM" if gpu else "Memory")
        self.quants.setColumnHidden(SPEED_COL, all(r.tokens_per_s is None for r in rows))
        for row in rows:
            self.quants.addTopLevelItem(quant_item(row))
        for i in range(self.quants.topLevelItemCount()):
            top = self.quants.topLevelItem(i)
            if top is not None and top.data(0, Qt.ItemDataRole.UserRole) == current:
                item = top
                self.quants.setCurrentItem(item)
                font = item.font(0)
                font.setBold(True)
                for col in range(len(COLUMNS)):
                    item.setFont(col, font)
        for i in range(self.quants.topLevelItemCount()):
            top = self.quants.topLevelItem(i)
            if (
                keep is not None
                and top is not None
                and top.data(0, Qt.ItemDataRole.UserRole) == keep
            ):
                self.quants.setCurrentItem(top)
        for col in range(len(COLUMNS)):
            self.quants.resizeColumnToContents(col)
        self._update_quant_buttons()

    def set_speed_note(self, text: str, *, measuring: bool = False) -> None:
        """What the speeds are estimated from (or that it is being measured)."""
        self.speed_note.setText(text)
        self.measure_button.setEnabled(not measuring)

    def current_family(self) -> str:
        return str(self.family_combo.currentData() or "")

    @Slot()
    def _update_quant_buttons(self, *_args: object) -> None:
        item = self.quants.currentItem()
        name = item.data(0, Qt.ItemDataRole.UserRole) if item is not None else None
        rows: dict[str, QuantRow] = getattr(self, "_rows", {})
        if name == AUTO:  # Auto means its pick: is that one downloaded?
            pick = next((r for r in rows.values() if r.recommended), None)
            self.use_quant.setEnabled(True)
            self.use_quant.setText(
                "Download and use" if pick is not None and not pick.installed else "Use Auto"
            )
            self.delete_quant.setEnabled(False)
            return
        row = rows.get(str(name))
        self.use_quant.setEnabled(item is not None)
        self.use_quant.setText(
            "Download and use" if row is not None and not row.installed else "Use this quantization"
        )
        if row is not None and row.remote:
            self.use_quant.setText("Use this model")
        self.delete_quant.setEnabled(
            row is not None and row.installed and not row.in_use and row.removable
        )

    @Slot()
    def _on_import_clicked(self) -> None:
        path, _filter = QFileDialog.getOpenFileName(
            self, "Import a model file", "", "GGUF model files (*.gguf);;All files (*)"
        )
        if path:
            self.import_requested.emit(path)

    @Slot()
    def _on_delete_clicked(self) -> None:
        item = self.quants.currentItem()
        if item is not None:
            self.delete_model_requested.emit(
                self.current_family(), str(item.data(0, Qt.ItemDataRole.UserRole))
            )

    def set_estimate(self, estimate: Callable[[int | None], str]) -> None:
        """How the Performance page estimates memory as the context length moves."""
        self._estimate = estimate
        editor = self.editors.get("performance.n_ctx")
        self._update_estimate(editor.current() if editor is not None else None)

    def show_download(self, fraction: float | None, text: str = "") -> None:
        """Download progress (0..1), or None to hide the bar."""
        visible = fraction is not None
        self.download_bar.setVisible(visible)
        self.cancel_download.setVisible(visible)
        if fraction is not None:
            self.download_bar.setValue(int(fraction * 1000))
            self.download_bar.setMaximum(1000)
        self.download_label.setText(text)

    def set_reload_pending(self, pending: bool, text: str = "") -> None:
        self.reload_notice.setText(
            text or ("Reload the model to apply the changes marked ↻." if pending else "")
        )
        self.reload_button.setVisible(pending)

    def set_value(self, key: str, value: Value) -> None:
        editor = self.editors.get(key)
        if editor is not None:
            editor.set_value(value)

    def set_auto_values(self, values: dict[str, Value]) -> None:
        """What "Automatic" / "Model default" comes to now, shown in the greyed-out fields."""
        for key, value in values.items():
            editor = self.editors.get(key)
            if editor is not None:
                editor.auto_value = value
                if editor.current() is None:
                    editor.set_value(None)

    def set_folders(self, folders: Mapping[Folder, Path]) -> None:
        for which, folder in folders.items():
            self.folder_labels[which].setText(str(folder))

    def _on_move(self, which: Folder) -> None:
        folder = QFileDialog.getExistingDirectory(
            self, f"Move the {which.value} to…", self.folder_labels[which].text()
        )
        if folder:
            models = which is Folder.MODELS
            (self.move_models_requested if models else self.move_chats_requested).emit(folder)

    def set_token_status(self, text: str) -> None:
        self.token_status.setText(text)

    # --- slots --------------------------------------------------------------------------
    @Slot(str, object)
    def _on_edited(self, key: str, value: Value) -> None:
        if key == "performance.n_ctx":
            self._update_estimate(value)
        self.setting_changed.emit(key, value)

    def _update_estimate(self, n_ctx: Value) -> None:
        if self._estimate is not None:
            self.memory_estimate.setText(self._estimate(n_ctx if isinstance(n_ctx, int) else None))

    @Slot(QTreeWidgetItem, int)
    def _on_quant_activated(self, item: QTreeWidgetItem | None, _column: int) -> None:
        if item is not None:
            self.quant_selected.emit(
                self.current_family(), str(item.data(0, Qt.ItemDataRole.UserRole))
            )

    @Slot()
    def _on_save_token(self) -> None:
        token = self.token_edit.text().strip()
        self.token_edit.clear()  # never left on screen
        if token:
            self.token_set_requested.emit(token)
