"""Settings → Tools: the built-in tools, the folders read_file may read, the MCP
servers (add, import an mcp.json, remove, start or restart, switch on/off) and whether
tools may run: per server, for all its tools (Ask — the default —, Allow in this chat,
Always allow, Never), and per tool, overriding its server ("As the server" follows it).

Renders what the controller gives it and emits ``*_requested`` intents; it runs no
server and reads no file (app/tools_page.py does). A server's descriptions are its
own words: shown as plain text.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPlainTextEdit,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from engine.tools.permissions import Choice

__all__ = ["AddServerDialog", "ServerRow", "ToolGroup", "ToolRow", "ToolsPage"]

BUILTIN_LABELS = {
    "datetime": "Date and time",
    "calculator": "Calculator",
    "search_chats": "Search my chats",
    "read_file": "Read files from the folders below",
}
_SERVER_CHOICES = (
    (Choice.ASK, "Ask"),
    (Choice.CHAT, "Allow in this chat"),
    (Choice.ALWAYS, "Always allow"),
    (Choice.NEVER, "Never"),
)
_TOOL_CHOICES = ((Choice.SERVER, "As the server"), *_SERVER_CHOICES)


@dataclass(frozen=True, slots=True)
class ServerRow:
    name: str
    where: str  # its command line or URL
    enabled: bool
    status: str  # a sentence: running, not started, or why it failed


@dataclass(frozen=True, slots=True)
class ToolRow:
    server: str  # "" for built-in tools
    name: str
    description: str
    enabled: bool
    permission: Choice


@dataclass(frozen=True, slots=True)
class ToolGroup:
    """A server's row (its rule for all its tools) and its tools' rows."""

    server: str  # "" for built-in tools
    permission: Choice
    tools: tuple[ToolRow, ...]


class ToolsPage(QWidget):
    builtin_toggled = Signal(str, bool)
    folder_add_requested = Signal(str)
    folder_remove_requested = Signal(str)
    server_add_requested = Signal(str, str, object, object)  # name, command, args, env dict
    server_import_requested = Signal(str)  # an mcp.json path
    server_remove_requested = Signal(str)
    server_start_requested = Signal(str)
    server_enabled_changed = Signal(str, bool)
    tool_enabled_changed = Signal(str, str, bool)  # server, tool, on
    permission_changed = Signal(str, str, object)  # server, tool ("*": all), Choice

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("page:tools")
        intro = QLabel(
            "Tools let the model look things up or act for you. Nothing runs without your "
            "permission: each call shows its arguments first, unless you chose Always allow.",
            self,
        )
        intro.setWordWrap(True)
        # Built-in tools.
        builtin = QGroupBox("Built-in tools (no network)", self)
        form = QVBoxLayout(builtin)
        self.builtin_boxes: dict[str, QCheckBox] = {}
        for name, label in BUILTIN_LABELS.items():
            box = QCheckBox(label, builtin)
            box.setObjectName(f"builtin:{name}")
            box.toggled.connect(lambda on, n=name: self.builtin_toggled.emit(n, on))
            form.addWidget(box)
            self.builtin_boxes[name] = box
        self.folders = QListWidget(builtin)
        self.folders.setObjectName("tool_folders")
        self.folders.setMaximumHeight(70)
        add_folder = QPushButton("Add folder…", builtin)
        add_folder.clicked.connect(self._pick_folder)
        remove_folder = QPushButton("Remove folder", builtin)
        remove_folder.clicked.connect(self._remove_folder)
        row = QHBoxLayout()
        row.addWidget(add_folder)
        row.addWidget(remove_folder)
        row.addStretch(1)
        form.addWidget(self.folders)
        form.addLayout(row)
        # Servers.
        servers = QGroupBox("Tool servers (MCP)", self)
        grid = QVBoxLayout(servers)
        self.servers = QListWidget(servers)
        self.servers.setObjectName("mcp_servers")
        self.servers.setMaximumHeight(110)
        self.servers.itemChanged.connect(self._on_server_item_changed)
        self.servers.currentItemChanged.connect(self._show_status)
        self.status = QLabel("No tool server yet: add one, or import an mcp.json.", servers)
        self.status.setObjectName("mcp_status")
        self.status.setWordWrap(True)
        self.status.setTextFormat(Qt.TextFormat.PlainText)
        buttons = QHBoxLayout()
        for text, slot in (
            ("Add…", self._add),
            ("Import mcp.json…", self._import),
            ("Start / restart", self._start),
            ("Remove", self._remove),
        ):
            button = QPushButton(text, servers)
            button.clicked.connect(slot)
            buttons.addWidget(button)
        buttons.addStretch(1)
        grid.addWidget(self.servers)
        grid.addLayout(buttons)
        grid.addWidget(self.status)
        # Every tool with its permission.
        self.tools = QTreeWidget(self)
        self.tools.setObjectName("tool_permissions")
        self.tools.setHeaderLabels(["Server and its tools", "May run"])
        self.tools.itemChanged.connect(self._on_tool_item_changed)
        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addWidget(builtin)
        layout.addWidget(servers)
        layout.addWidget(
            QLabel(
                "Each server's rule holds for all its tools; a tool's own rule overrides it "
                "(untick a tool to hide it from the model):",
                self,
                wordWrap=True,
            )
        )
        layout.addWidget(self.tools, 1)
        self._filling = False

    # -- what the controller shows --------------------------------------------------

    def set_builtins(self, on: tuple[str, ...], folders: tuple[str, ...]) -> None:
        self._filling = True
        for name, box in self.builtin_boxes.items():
            box.setChecked(name in on)
        self.folders.clear()
        self.folders.addItems(list(folders))
        self._filling = False

    def set_servers(self, rows: list[ServerRow]) -> None:
        self._filling = True
        selected = self.selected_server()
        self.servers.clear()
        for row in rows:
            item = QListWidgetItem(f"{row.name} — {row.where}", self.servers)
            item.setData(Qt.ItemDataRole.UserRole, row.name)
            item.setData(Qt.ItemDataRole.UserRole + 1, row.status)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Checked if row.enabled else Qt.CheckState.Unchecked)
            item.setToolTip(row.status)
            if row.name == selected:
                self.servers.setCurrentItem(item)
        if rows and self.servers.currentItem() is None:
            self.servers.setCurrentRow(0)
        self._show_status()
        self._filling = False

    def set_status(self, text: str) -> None:
        self.status.setText(text)

    def set_tools(self, groups: list[ToolGroup]) -> None:
        self._filling = True
        self.tools.clear()
        for group in groups:
            label = group.server or "Built in"
            top = QTreeWidgetItem(self.tools, [label, ""])
            top.setData(0, Qt.ItemDataRole.UserRole, (group.server, "*"))
            font = top.font(0)
            font.setBold(True)
            top.setFont(0, font)
            top.setToolTip(0, f"The rule for all of {label}'s tools, unless a tool has its own.")
            self._combo(top, group.server, "*", _SERVER_CHOICES, group.permission, label)
            for row in group.tools:
                item = QTreeWidgetItem(top, [row.name, ""])
                item.setData(0, Qt.ItemDataRole.UserRole, (row.server, row.name))
                item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
                on = Qt.CheckState.Checked if row.enabled else Qt.CheckState.Unchecked
                item.setCheckState(0, on)
                item.setToolTip(0, row.description)
                self._combo(item, row.server, row.name, _TOOL_CHOICES, row.permission, row.name)
            top.setExpanded(True)
        self.tools.resizeColumnToContents(0)
        self._filling = False

    def _combo(
        self,
        item: QTreeWidgetItem,
        server: str,
        tool: str,
        choices: tuple[tuple[Choice, str], ...],
        current: Choice,
        label: str,
    ) -> None:
        combo = QComboBox(self.tools)
        combo.setObjectName(f"permission:{server}/{tool}")
        for choice, text in choices:
            combo.addItem(text, choice)
        values = [c for c, _ in choices]
        combo.setCurrentIndex(values.index(current) if current in values else 0)
        combo.setAccessibleName(f"Whether {label} may run")
        combo.currentIndexChanged.connect(
            # (Qt hands a StrEnum back as its plain str.)
            lambda _i, c=combo: self.permission_changed.emit(server, tool, Choice(c.currentData()))
        )
        self.tools.setItemWidget(item, 1, combo)

    def permission_combo(self, server: str, tool: str = "*") -> QComboBox | None:
        found = self.tools.findChild(QComboBox, f"permission:{server}/{tool}")
        return found if isinstance(found, QComboBox) else None

    def selected_server(self) -> str:
        item = self.servers.currentItem()
        return str(item.data(Qt.ItemDataRole.UserRole)) if item is not None else ""

    # -- intents ------------------------------------------------------------------------

    def _show_status(self, *_args: object) -> None:
        item = self.servers.currentItem()
        if item is not None:
            self.status.setText(
                f"{item.data(Qt.ItemDataRole.UserRole)}: {item.data(Qt.ItemDataRole.UserRole + 1)}"
            )

    def _on_server_item_changed(self, item: QListWidgetItem) -> None:
        if not self._filling:
            on = item.checkState() == Qt.CheckState.Checked
            self.server_enabled_changed.emit(str(item.data(Qt.ItemDataRole.UserRole)), on)

    def _on_tool_item_changed(self, item: QTreeWidgetItem, column: int) -> None:
        if not self._filling and column == 0 and item.parent() is not None:
            server, name = item.data(0, Qt.ItemDataRole.UserRole)
            self.tool_enabled_changed.emit(
                server, name, item.checkState(0) == Qt.CheckState.Checked
            )

    def _pick_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "A folder the model may read")
        if folder:
            self.folder_add_requested.emit(folder)

    def _remove_folder(self) -> None:
        item = self.folders.currentItem()
        if item is not None:
            self.folder_remove_requested.emit(item.text())

    def _add(self) -> None:
        dialog = AddServerDialog(self)
        if dialog.exec() == QDialog.DialogCode.Accepted:
            name, command, args, env = dialog.values()
            self.server_add_requested.emit(name, command, args, env)

    def _import(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Import tool servers", "", "mcp.json (*.json);;All files (*)"
        )
        if path:
            self.server_import_requested.emit(path)

    def _start(self) -> None:
        if self.selected_server():
            self.server_start_requested.emit(self.selected_server())

    def _remove(self) -> None:
        if self.selected_server():
            self.server_remove_requested.emit(self.selected_server())


class AddServerDialog(QDialog):
    """A server's name and command line (or URL), and its environment (VAR=VALUE
    lines, kept in the system keyring, never in a file)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Add a tool server")
        self.name = QLineEdit(self)
        self.name.setPlaceholderText("time")
        self.command = QLineEdit(self)
        self.command.setPlaceholderText("uvx mcp-server-time   or   https://example.org/mcp")
        self.env = QPlainTextEdit(self)
        self.env.setPlaceholderText("API_TOKEN=…  (one per line; kept in the system keyring)")
        self.env.setMaximumHeight(70)
        self.error = QLabel("", self)
        self.error.setWordWrap(True)
        form = QFormLayout()
        form.addRow("Name", self.name)
        form.addRow("Command or URL", self.command)
        form.addRow("Environment", self.env)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel, self
        )
        buttons.accepted.connect(self._check)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.error)
        layout.addWidget(buttons)

    def values(self) -> tuple[str, str, tuple[str, ...], dict[str, str]]:
        text = self.command.text().strip()
        env = {}
        for line in self.env.toPlainText().splitlines():
            var, sep, value = line.partition("=")
            if sep and var.strip():
                env[var.strip()] = value.strip()
        if text.startswith(("http://", "https://")):
            return self.name.text().strip(), text, (), env
        try:
            words = shlex.split(text)
        except ValueError:
            words = text.split()
        return self.name.text().strip(), words[0] if words else "", tuple(words[1:]), env

    def _check(self) -> None:
        name, command, _, _ = self.values()
        if not name or not command:
            self.error.setText("Give the server a name and the command that starts it.")
            return
        self.accept()
