"""Settings → Connections: the OpenAI-compatible servers a person chats through
(vLLM, llama.cpp's server, Ollama, LM Studio, a hosted service).

It renders and asks: a list of connections, a form (name, address, API key), and
one sentence of result; Save, Check and Remove are intents (``*_requested``) that
app/connections.py carries out (it owns the file, the keyring and the network).
The API key field shows dots, is cleared once Save hands it on, and this widget
never keeps a key anywhere else.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtWidgets import (
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ui.questions import ask_before
from ui.theme import mute

__all__ = ["ConnectionRow", "ConnectionsPanel"]


@dataclass(frozen=True, slots=True)
class ConnectionRow:
    """One connection as the page lists it."""

    name: str
    base_url: str
    models: tuple[str, ...] = ()  # as last listed; () = not asked yet or none
    note: str = ""  # why its models are not known (a sentence), or ""


class ConnectionsPanel(QWidget):
    # original name ("" = a new one), name, address, API key ("" = keep the saved one)
    save_requested = Signal(str, str, str, str)
    check_requested = Signal(str, str, str)  # name, address, API key ("" = the saved one)
    remove_requested = Signal(str)  # name
    selected = Signal(str)  # name of the connection shown in the form ("" = a new one)
    forget_key_requested = Signal(str)  # name

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("connections_panel")
        self._rows: dict[str, ConnectionRow] = {}
        self._editing = ""  # the name of the connection in the form; "" = a new one
        self._key_saved = False  # the keyring has a key for it ("Forget key" is offered)
        intro = QLabel(
            "Chat with a model on another computer or service: vLLM, llama.cpp's server, "
            "Ollama, LM Studio or a hosted OpenAI-compatible API. The messages of a chat on "
            "such a model go to that server; every other chat stays on this computer."
        )
        intro.setObjectName("connections_intro")
        intro.setWordWrap(True)
        self.list = QListWidget()
        self.list.setObjectName("connections_list")
        self.list.setAccessibleName("Connections")
        self.list.currentItemChanged.connect(self._on_current_changed)
        self.empty = QLabel("No connections yet. Fill in the form below and press Save.")
        self.empty.setObjectName("connections_empty")
        mute(self.empty)
        self.name_edit = QLineEdit()
        self.name_edit.setObjectName("connection_name")
        self.name_edit.setAccessibleName("Connection name")
        self.name_edit.setPlaceholderText("gpu-box")
        self.url_edit = QLineEdit()
        self.url_edit.setObjectName("connection_url")
        self.url_edit.setAccessibleName("Server address")
        self.url_edit.setPlaceholderText("http://gpu-box:8000/v1")
        self.key_edit = QLineEdit()
        self.key_edit.setObjectName("connection_key")
        self.key_edit.setAccessibleName("API key")
        self.key_edit.setEchoMode(QLineEdit.EchoMode.Password)
        self.key_edit.setPlaceholderText("optional; kept in your system's keyring")
        self.key_status = QLabel("")
        self.key_status.setObjectName("connection_key_status")
        self.key_status.setWordWrap(True)
        mute(self.key_status)
        self.forget_key = QPushButton("Forget key")
        self.forget_key.setObjectName("connection_forget_key")
        self.forget_key.setAccessibleName("Forget the saved API key")
        self.forget_key.clicked.connect(lambda: self.forget_key_requested.emit(self._editing))
        key_row = QHBoxLayout()
        key_row.addWidget(self.key_edit, 1)
        key_row.addWidget(self.forget_key)
        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        form.addRow("Name", self.name_edit)
        form.addRow("Address", self.url_edit)
        form.addRow("API key", key_row)
        form.addRow("", self.key_status)
        self.new_button = QPushButton("New connection")
        self.new_button.setObjectName("connection_new")
        self.new_button.clicked.connect(self.start_new)
        self.save_button = QPushButton("Save")
        self.save_button.setObjectName("connection_save")
        self.save_button.clicked.connect(self._on_save)
        self.check_button = QPushButton("Check")
        self.check_button.setObjectName("connection_check")
        self.check_button.setAccessibleName("Check the connection")
        self.check_button.clicked.connect(self._on_check)
        self.remove_button = QPushButton("Remove…")
        self.remove_button.setObjectName("connection_remove")
        self.remove_button.setAccessibleName("Remove this connection")
        self.remove_button.clicked.connect(lambda: self.remove_requested.emit(self._editing))
        buttons = QHBoxLayout()
        buttons.addWidget(self.new_button)
        buttons.addStretch(1)
        buttons.addWidget(self.remove_button)
        buttons.addWidget(self.check_button)
        buttons.addWidget(self.save_button)
        self.result = QLabel("")
        self.result.setObjectName("connection_result")
        self.result.setWordWrap(True)
        self.result.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.models = QLabel("")
        self.models.setObjectName("connection_models")
        self.models.setWordWrap(True)
        self.models.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        hint = QLabel(
            "Choose a server's model in Settings → Model (its connection is listed there "
            "next to the models on this computer). Addresses end in /v1: "
            "vLLM http://host:8000/v1 · llama-server http://host:8080/v1 · "
            "Ollama http://host:11434/v1 · LM Studio http://host:1234/v1."
        )
        hint.setObjectName("connections_hint")
        hint.setWordWrap(True)
        mute(hint)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(intro)
        layout.addWidget(self.list, 1)
        layout.addWidget(self.empty)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.result)
        layout.addWidget(self.models)
        layout.addWidget(hint)
        self.start_new()

    # --- what the controller shows ---------------------------------------------------
    @property
    def editing(self) -> str:
        return self._editing

    def set_connections(self, rows: Sequence[ConnectionRow], current: str | None = None) -> None:
        """The connections; ``current`` is shown in the form (None: the one shown now)."""
        keep = self._editing if current is None else current
        self._rows = {r.name: r for r in rows}
        blocked = self.list.blockSignals(True)
        self.list.clear()
        chosen: QListWidgetItem | None = None
        for row in rows:
            item = QListWidgetItem(f"{row.name}    {row.base_url}")
            item.setData(Qt.ItemDataRole.UserRole, row.name)
            item.setToolTip(row.note or ", ".join(row.models))
            self.list.addItem(item)
            if row.name == keep:
                chosen = item
        self.list.blockSignals(blocked)
        self.list.setVisible(bool(rows))
        self.empty.setVisible(not rows)
        if chosen is not None:
            self.list.setCurrentItem(chosen)  # (signals blocked above: set the form here)
            self._show(self._rows[keep])
        elif keep not in self._rows and self._editing:
            self.start_new()
        self._update_buttons()

    def show_result(self, text: str) -> None:
        """One sentence: what Save or Check found."""
        self.result.setText(text)

    def show_models(self, name: str) -> None:
        row = self._rows.get(name)
        if row is None or not row.models:
            self.models.setText("")
            return
        self.models.setText(f"Models on {name}: " + ", ".join(row.models))

    def set_key_status(self, text: str, *, saved: bool = False) -> None:
        """What the keyring holds for the connection shown; ``saved``: a key, which
        "Forget key" can then remove (it is not offered for a key that is not there)."""
        self.key_status.setText(text)
        self._key_saved = saved
        self._update_buttons()

    def set_busy(self, busy: bool) -> None:
        """A check or a save is under way (the buttons wait for it)."""
        for button in (self.save_button, self.check_button, self.remove_button):
            button.setEnabled(not busy)
        if not busy:
            self._update_buttons()

    def ask(self, title: str, text: str, detail: str, action: str) -> bool:
        """Ask before something the person should know about; Cancel is the default."""
        return ask_before(
            self, name="connections_question", title=title, text=text, detail=detail,
            action=action,
        )  # fmt: skip

    # --- the form -------------------------------------------------------------------
    @Slot()
    def start_new(self) -> None:
        self._editing = ""
        self._key_saved = False
        blocked = self.list.blockSignals(True)
        self.list.clearSelection()
        self.list.setCurrentRow(-1)
        self.list.blockSignals(blocked)
        self.name_edit.clear()
        self.url_edit.clear()
        self.key_edit.clear()
        self.key_status.setText("")
        self.result.setText("")
        self.models.setText("")
        self._update_buttons()
        self.selected.emit("")

    def _show(self, row: ConnectionRow) -> None:
        changed = row.name != self._editing
        self._editing = row.name
        self.name_edit.setText(row.name)
        self.url_edit.setText(row.base_url)
        self.key_edit.clear()
        if changed:
            self.result.setText(row.note)
            self.key_status.setText("")
            self._key_saved = False
        self.show_models(row.name)
        self._update_buttons()
        if changed:
            self.selected.emit(row.name)

    def _update_buttons(self) -> None:
        existing = bool(self._editing)
        self.remove_button.setEnabled(existing)
        self.forget_key.setVisible(existing and self._key_saved)
        self.save_button.setText("Save" if existing else "Add")

    @Slot(QListWidgetItem, QListWidgetItem)
    def _on_current_changed(self, item: QListWidgetItem | None, _old: object) -> None:
        if item is None:
            return
        row = self._rows.get(str(item.data(Qt.ItemDataRole.UserRole)))
        if row is not None:
            self._show(row)

    def _take_key(self) -> str:
        key = self.key_edit.text().strip()
        self.key_edit.clear()  # never left on screen
        return key

    @Slot()
    def _on_save(self) -> None:
        self.save_requested.emit(
            self._editing, self.name_edit.text(), self.url_edit.text(), self._take_key()
        )

    @Slot()
    def _on_check(self) -> None:
        # The key stays typed (as dots) for the Save that usually follows a Check.
        self.check_requested.emit(
            self.name_edit.text(), self.url_edit.text(), self.key_edit.text().strip()
        )
