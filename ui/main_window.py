"""Hearth's main window: conversations on the left, the chat on the right.

It only renders and asks: every action leaves as a ``*_requested`` signal and
the controllers (app.chat) answer by calling the ``show_*``/``set_*`` methods.
The ``ResponseState`` it shows belongs to app.chat.replies; ``state`` is what
it last rendered.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import Qt, QTimer, Signal, Slot
from PySide6.QtGui import QAction, QCloseEvent, QDragEnterEvent, QDropEvent, QKeySequence
from PySide6.QtWidgets import (
    QFileDialog,
    QFrame,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QMainWindow,
    QMenu,
    QPushButton,
    QSplitter,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from engine.history.types import Conversation
from engine.types import ModelInfo
from ui.attachment_bar import (
    DOCUMENT_FILTER,
    DOCUMENT_PATTERNS,
    DOCUMENTS_TIP,
    FILES_TIP,
    AttachmentBar,
    local_files,
)
from ui.attachment_tray import (
    IMAGE_PATTERNS,
    AttachmentTray,
    brings_media,
    media_of,
    route_files,
)
from ui.chat_toolbar import ChatToolbar
from ui.chat_view import ChatView
from ui.composer import Composer
from ui.conversation_list import ConversationList, ConversationListModel
from ui.questions import ask_before
from ui.search_panel import SearchBox, SearchResults
from ui.state import ResponseState

UNDO_MS = 10_000


def format_bytes(n: int) -> str:
    value = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit in ("B", "KB") else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"


class ErrorBanner(QFrame):
    """A sentence about what went wrong, shown above the composer until dismissed."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("error_banner")
        self.setAccessibleName("Problem")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(10, 6, 6, 6)
        self.label = QLabel(self)
        self.label.setObjectName("error_text")
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        close = QToolButton(self)
        close.setObjectName("error_dismiss")
        close.setText("✕")
        close.setAccessibleName("Dismiss")
        close.setToolTip("Dismiss")
        close.clicked.connect(self.hide)
        layout.addWidget(self.label, 1)
        layout.addWidget(close, 0, Qt.AlignmentFlag.AlignTop)
        self.hide()

    def show_text(self, text: str) -> None:
        self.label.setText(text)
        self.show()


class MainWindow(QMainWindow):
    send_requested = Signal(str)
    media_received = Signal(list, list)  # files (paths) and image data (PNG) to attach
    files_dropped = Signal(list)  # local file paths dropped on the window (attachments)
    stop_requested = Signal()
    new_chat_requested = Signal()
    conversation_selected = Signal(int)
    rename_requested = Signal(int, str)
    delete_requested = Signal(int)
    settings_requested = Signal()
    about_requested = Signal()
    close_requested = Signal()
    copy_last_reply_requested = Signal()
    search_requested = Signal(str)
    pin_requested = Signal(int, bool)
    undo_delete_requested = Signal(int)
    export_requested = Signal(object, str, str)  # conversation id or None (all), format, path
    import_requested = Signal(str)  # path

    def __init__(self) -> None:
        super().__init__()
        self.setObjectName("main_window")
        self.setWindowTitle("Hearth")
        self.setAcceptDrops(True)  # files dropped anywhere on the window are attached
        self.resize(1100, 720)
        self._state = ResponseState.LOADING
        self._undo_button: QPushButton | None = None
        # Asked before the window closes (the app sets it: a folder move asks first).
        self.may_close: Callable[[], bool] = lambda: True

        # Sidebar
        self.new_chat_button = QPushButton("New chat")
        self.new_chat_button.setObjectName("new_chat_button")
        self.new_chat_button.setAccessibleName("New chat")
        self.new_chat_button.setToolTip("Start a new conversation (Ctrl+N)")
        self.conversations = ConversationListModel(self)
        self.conversation_list = ConversationList(self.conversations)
        self.settings_button = QPushButton("Settings")
        self.settings_button.setObjectName("settings_button")
        self.settings_button.setAccessibleName("Settings")
        self.settings_button.setToolTip("Settings (Ctrl+,)")
        sidebar = QWidget()
        sidebar.setObjectName("sidebar")
        side = QVBoxLayout(sidebar)
        side.setContentsMargins(8, 8, 4, 8)
        self.search_box = SearchBox()
        self.search_results = SearchResults()
        self.search_results.hide()
        self.more_button = QToolButton()
        self.more_button.setObjectName("more_button")
        self.more_button.setText("⋯")
        self.more_button.setAccessibleName("More")
        self.more_button.setToolTip("Export, import, about")
        self.more_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        more = QMenu(self.more_button)
        more.addAction("Export all chats as JSON…", lambda: self._ask_export(None, "json"))
        more.addAction("Export all chats as Markdown…", lambda: self._ask_export(None, "md"))
        more.addAction("Import chats from JSON…", self._ask_import)
        more.addSeparator()
        more.addAction("About Hearth", self.about_requested.emit)
        self._more_menu = more  # ("Quit Hearth" joins it below, with its shortcut)
        self.more_button.setMenu(more)
        top = QHBoxLayout()
        top.addWidget(self.new_chat_button, 1)
        top.addWidget(self.more_button)
        side.addLayout(top)
        side.addWidget(self.search_box)
        side.addWidget(self.conversation_list, 1)
        side.addWidget(self.search_results, 1)
        side.addWidget(self.settings_button)

        # Chat pane
        self.chat_toolbar = ChatToolbar()
        self.chat_view = ChatView()
        self.chat_view.setPlaceholderText(
            "Type a message below to start chatting. Nothing leaves this computer."
        )
        self.error_banner = ErrorBanner()
        self.composer = Composer()
        self.send_button = QPushButton("Send")
        self.send_button.setObjectName("send_button")
        self.send_button.setAccessibleName("Send")
        self.send_button.setMinimumWidth(84)
        self.send_button.setDefault(False)
        self.send_button.setAutoDefault(False)
        self.attachments = AttachmentBar()  # files for the next message (ui/attachment_bar.py)
        self.attachment_tray = AttachmentTray()  # images for the next message (issue 13)
        # One attach button for images and documents (issues 13, 14); the file dialog
        # offers images only to a model that can see.
        self.attach_button = self.attachments.attach_button
        self._can_see = False
        row = QHBoxLayout()
        row.addWidget(self.attach_button, 0, Qt.AlignmentFlag.AlignBottom)
        row.addWidget(self.composer, 1)
        row.addWidget(self.send_button, 0, Qt.AlignmentFlag.AlignBottom)
        pane = QWidget()
        chat = QVBoxLayout(pane)
        chat.setContentsMargins(4, 8, 8, 8)
        chat.addWidget(self.chat_toolbar)
        chat.addWidget(self.chat_view, 1)
        chat.addWidget(self.error_banner)
        chat.addWidget(self.attachments)
        chat.addWidget(self.attachment_tray)
        chat.addLayout(row)
        self._chat_layout = chat

        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(sidebar)
        splitter.addWidget(pane)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([260, 840])
        splitter.setChildrenCollapsible(False)
        self.setCentralWidget(splitter)

        # Status bar: model · speed · memory
        self.status_model = QLabel("Loading model…")
        self.status_model.setObjectName("status_model")
        self.status_model.setAccessibleName("Model")
        self.status_speed = QLabel("")
        self.status_speed.setObjectName("status_speed")
        self.status_speed.setAccessibleName("Speed")
        self._speed_from = ""  # the server the model in use is on ("": this computer)
        self.status_memory = QLabel("")
        self.status_memory.setObjectName("status_memory")
        self.status_memory.setAccessibleName("Memory in use")
        bar = self.statusBar()
        # All permanent (right side): the left is for passing messages ("Deleted …",
        # "Now using …"), which would otherwise be drawn over a normal widget.
        bar.addPermanentWidget(self.status_model)
        bar.addPermanentWidget(self.status_speed)
        bar.addPermanentWidget(self.status_memory)

        # Wiring of intents
        self.composer.submitted.connect(self._on_send_clicked)
        self.send_button.clicked.connect(self._on_send_clicked)
        self.composer.textChanged.connect(self._update_send_button)
        self.composer.media_received.connect(self.media_received)
        self.attachment_tray.changed.connect(self._update_send_button)
        self.attach_button.clicked.connect(self.choose_files)
        self.setAcceptDrops(True)  # files and images dropped anywhere on the chat
        self.new_chat_button.clicked.connect(self.new_chat_requested)
        self.settings_button.clicked.connect(self.settings_requested)
        self.conversation_list.conversation_activated.connect(self.conversation_selected)
        self.conversation_list.delete_requested.connect(self._on_delete_asked)
        self.conversations.rename_requested.connect(self.rename_requested)
        self.conversation_list.pin_requested.connect(self.pin_requested)
        self.conversation_list.export_requested.connect(self._ask_export)
        self.search_box.query_changed.connect(self._on_query)
        self._add_action("Search", QKeySequence.StandardKey.Find, self._focus_search)
        self._add_action("New chat", QKeySequence.StandardKey.New, self.new_chat_requested.emit)
        self._add_action("Settings", QKeySequence("Ctrl+,"), self.settings_requested.emit)
        self._add_action(
            "About Hearth", QKeySequence.StandardKey.HelpContents, self.about_requested.emit
        )
        self._add_action("Stop", QKeySequence(Qt.Key.Key_Escape), self._on_escape)
        self._more_menu.addAction(
            self._add_action("Quit Hearth", QKeySequence("Ctrl+Q"), self.close)
        )
        self._add_action(
            "Rename chat", QKeySequence(Qt.Key.Key_F2), self.conversation_list.rename_current
        )
        self._add_action(
            "Copy last reply", QKeySequence("Ctrl+Shift+C"), self.copy_last_reply_requested.emit
        )
        self.set_state(ResponseState.LOADING)
        self.composer.setFocus()

    def _add_action(
        self, text: str, shortcut: QKeySequence | QKeySequence.StandardKey, slot: object
    ) -> QAction:
        action = QAction(text, self)
        action.setShortcut(shortcut)
        action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        action.triggered.connect(slot)
        self.addAction(action)
        return action

    # --- state ------------------------------------------------------------------
    @property
    def state(self) -> ResponseState:
        return self._state

    def set_state(self, state: ResponseState) -> None:
        self._state = state
        generating = state in (ResponseState.GENERATING, ResponseState.STOPPING)
        self.send_button.setText("Stop" if generating else "Send")
        self.send_button.setAccessibleName("Stop" if generating else "Send")
        self.send_button.setToolTip("Stop the reply (Esc)" if generating else "Send (Enter)")
        self._update_send_button()

    def _update_send_button(self) -> None:
        state = self._state
        if state == ResponseState.GENERATING:
            enabled = True
        elif state == ResponseState.IDLE:
            enabled = bool(self.composer.text().strip() or self.attachment_tray.keys())
        else:
            enabled = False
        self.send_button.setEnabled(enabled)

    # --- what the controller shows ------------------------------------------------
    def set_model_info(self, info: ModelInfo | None, text: str | None = None) -> None:
        if info is None:
            self.status_model.setText(text or "No model loaded")
            self.status_model.setToolTip("")
            return
        # "Qwen3.5 9B Q4_K_M · GPU · 33/33 layers": which file, and where it runs (a
        # model that fell back to the CPU shows it here, not only in a passing notice).
        named = " ".join(part for part in (info.name, info.quantization) if part)
        device = info.extra.get("device", "")
        self.status_model.setText(f"{named} · {device}" if device else named)
        self.status_model.setToolTip(
            f"{info.path}\nArchitecture: {info.architecture}\nContext: {info.n_ctx} tokens\n"
            f"File size: {format_bytes(info.file_size)}\nChat template: {info.template_source}"
        )
        self.chat_view.set_assistant_name(info.name)
        self._speed_from = info.extra.get("where", "")  # a server's: speed as received

    def set_speed(self, tokens_per_s: float | None) -> None:
        if tokens_per_s is None:
            self.status_speed.setText("")
            return
        where = self._speed_from
        if not where:
            self.status_speed.setText(f"{tokens_per_s:.1f} tokens/s")
            self.status_speed.setToolTip("How fast the model on this computer writes.")
            return
        # Measured as the pieces arrive over the network: the server's own speed, less
        # what the network and the server's batching hold back. Said as such.
        self.status_speed.setText(f"{tokens_per_s:.1f} tokens/s received")
        self.status_speed.setToolTip(
            f"How fast the reply arrived from {where}: the network and the server's "
            "other work are counted in; the server's own speed may be higher."
        )

    def set_memory(self, rss_bytes: int) -> None:
        self.status_memory.setText(f"Memory: {format_bytes(rss_bytes)}")

    def add_notice_bar(self, bar: QWidget) -> None:
        """Put a strip (e.g. the model download bar) above the error banner."""
        self._chat_layout.insertWidget(self._chat_layout.indexOf(self.error_banner), bar)

    def show_status(self, text: str, timeout_ms: int) -> None:
        self.statusBar().showMessage(text, timeout_ms)

    def clear_status(self) -> None:
        self.statusBar().clearMessage()

    def show_error(self, text: str) -> None:
        self.error_banner.show_text(text)

    def clear_error(self) -> None:
        self.error_banner.hide()

    def show_conversations(
        self,
        rows: list[Conversation],
        current: int | None,
        more: Callable[[int], list[Conversation]] | None = None,
    ) -> None:
        self.conversations.set_conversations(rows, more)
        self.conversation_list.select_conversation(current)

    # --- slots ------------------------------------------------------------------------
    @Slot()
    def _on_send_clicked(self) -> None:
        if self._state == ResponseState.GENERATING:
            self.stop_requested.emit()
            return
        if self._state != ResponseState.IDLE:
            return
        text = self.composer.text().strip()
        if text or self.attachment_tray.keys():
            self.send_requested.emit(text)

    # --- images (issue 13) ------------------------------------------------------------
    def set_can_see(self, can_see: bool) -> None:
        """Images join the attach button's files for a model that can see them."""
        self._can_see = can_see
        self.attach_button.setToolTip(FILES_TIP if can_see else DOCUMENTS_TIP)

    @Slot()
    def choose_files(self) -> None:
        """The file dialog, window-modal and not blocking (a reply may be streaming):
        images to the model's eyes, every other file to the documents."""
        filters = DOCUMENT_FILTER
        if self._can_see:
            filters = (
                f"Images and documents ({IMAGE_PATTERNS} {DOCUMENT_PATTERNS});;"
                f"Images ({IMAGE_PATTERNS});;{DOCUMENT_FILTER}"
            )
        dialog = QFileDialog(self, "Attach files", "", filters)
        dialog.setObjectName("attach_dialog")
        dialog.setFileMode(QFileDialog.FileMode.ExistingFiles)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.filesSelected.connect(
            lambda paths: route_files(
                list(paths), [], self.media_received.emit, self.attachments.files_chosen.emit
            )
        )
        dialog.open()

    # --- files dropped on the window: images to see, documents to read ----------------
    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if brings_media(event.mimeData()) or local_files(event.mimeData()):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        paths, images = media_of(event.mimeData())
        if paths or images:
            event.acceptProposedAction()
            route_files(paths, images, self.media_received.emit, self.files_dropped.emit)

    @Slot()
    def _on_escape(self) -> None:
        """Esc, by context: stop a reply; else leave the search; else cancel an edit."""
        if self._state == ResponseState.GENERATING:
            self.stop_requested.emit()
        elif self.search_box.hasFocus() or self.search_box.text():
            self.search_box.clear()
            self._on_query("")
            self.conversation_list.setFocus()
        else:
            self.composer.edit_cancelled.emit()

    # --- search, undo, export -----------------------------------------------------------
    def _focus_search(self) -> None:
        self.search_box.setFocus()
        self.search_box.selectAll()

    @Slot(str)
    def _on_query(self, query: str) -> None:
        searching = bool(query)
        self.conversation_list.setVisible(not searching)
        self.search_results.setVisible(searching)
        if searching:
            self.search_requested.emit(query)

    def offer_undo(self, text: str, conv_id: int) -> None:
        """Say what was deleted, with an Undo button, for ten seconds."""
        self._drop_undo()
        button = QPushButton("Undo")
        button.setObjectName("undo_delete_button")
        button.setAccessibleName("Undo delete")
        button.setProperty("conversation_id", conv_id)
        button.clicked.connect(self._on_undo_clicked)
        self._undo_button = button
        # A permanent widget: temporary status messages would hide a normal one.
        self.statusBar().addPermanentWidget(button)
        self.statusBar().showMessage(text, UNDO_MS)
        QTimer.singleShot(UNDO_MS, button, self._drop_undo)

    @Slot()
    def _on_undo_clicked(self) -> None:
        if self._undo_button is not None:
            conv_id = int(self._undo_button.property("conversation_id"))
            self._drop_undo()
            self.undo_delete_requested.emit(conv_id)

    def _drop_undo(self) -> None:
        button, self._undo_button = self._undo_button, None
        if button is not None:
            self.statusBar().removeWidget(button)
            button.deleteLater()
            self.statusBar().clearMessage()

    def _ask_export(self, conv_id: int | None, fmt: str) -> None:
        suffix = "md" if fmt == "md" else "json"
        name = "hearth-chats" if conv_id is None else f"hearth-chat-{conv_id}"
        path, _ = QFileDialog.getSaveFileName(
            self,
            "Export chats",
            str(Path.home() / f"{name}.{suffix}"),
            "Markdown (*.md)" if fmt == "md" else "JSON (*.json)",
        )
        if path:
            self.export_requested.emit(conv_id, fmt, path)

    def _ask_import(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Import chats", str(Path.home()), "Hearth export (*.json)"
        )
        if path:
            self.import_requested.emit(path)

    def ask_system_prompt(self, current: str) -> str | None:
        """This chat's system prompt, edited; None if cancelled."""
        text, ok = QInputDialog.getMultiLineText(
            self,
            "System prompt for this chat",
            "Instructions the model gets at the start of this conversation:",
            current,
        )
        return text if ok else None

    def confirm(self, title: str, question: str, detail: str, action: str = "Delete") -> bool:
        """Ask before something that cannot be undone; Cancel is the default."""
        return ask_before(
            self, name="confirm_delete", title=title, text=question, detail=detail,
            action=action, destructive=True,
        )  # fmt: skip

    @Slot(int)
    def _on_delete_asked(self, conv_id: int) -> None:
        row = self.conversations.row_of(conv_id)
        if row is None:
            return
        title = self.conversations.conversation_at(row).title
        if self.confirm(
            "Delete conversation",
            f"Delete “{title}”?",
            "Its messages will be removed from this computer.",
        ):
            self.delete_requested.emit(conv_id)

    def closeEvent(self, event: QCloseEvent) -> None:
        if not self.may_close():  # e.g. the models folder is being moved: it asked, "no"
            event.ignore()
            return
        # Off the screen first: shutting down waits for the engine (a model load
        # cannot be interrupted), and a frozen window must never be what is seen.
        self.hide()
        self.close_requested.emit()
        super().closeEvent(event)
