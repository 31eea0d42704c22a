"""Settings → Tools, the controller: shows the ToolsService's state on the page and
carries out what the person asks there (servers start on a background thread: a
server can take seconds to start, or never answer)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QObject, QTimer, Slot

from app.background import BackgroundOp, run_in_background
from app.notifier import Notifier
from app.tools_service import ToolSettings, ToolsService
from engine.tools.builtin import BUILTIN_NAMES
from engine.tools.mcp_client import McpError
from engine.tools.mcp_config import McpConfigError
from engine.tools.permissions import ANY_TOOL, Choice
from engine.types import ToolSpec
from ui.settings_dialog import SettingsDialog
from ui.settings_tools import ServerRow, ToolGroup, ToolRow, ToolsPage

__all__ = ["ToolsPageController"]

# The built-in tools' own descriptions, for the permissions list.
_BUILTIN_ABOUT = {
    "datetime": "The current date and time.",
    "calculator": "Exact arithmetic.",
    "search_chats": "Search your earlier chats.",
    "read_file": "Read a text file from the folders you allowed.",
}


class ToolsPageController(QObject):
    """``current_chat()``: the chat "Allow in this chat" is about (None: none open)."""

    def __init__(
        self,
        tools: ToolsService,
        notifier: Notifier,
        parent: QObject | None = None,
        *,
        current_chat: Callable[[], int | None] = lambda: None,
    ):
        super().__init__(parent)
        self.tools, self.notifier = tools, notifier
        self._current_chat = current_chat
        self.page: ToolsPage | None = None
        self._jobs: list[BackgroundOp[tuple[str, list[ToolSpec], str]]] = []

    def attach(self, dialog: SettingsDialog) -> None:
        page = ToolsPage()
        dialog.add_page("tools", "Tools", page, after="connections")
        self.page = page
        page.builtin_toggled.connect(self._on_builtin_toggled)
        page.folder_add_requested.connect(self._on_folder_add)
        page.folder_remove_requested.connect(self._on_folder_remove)
        page.server_add_requested.connect(self._on_server_add)
        page.server_import_requested.connect(self._on_server_import)
        page.server_remove_requested.connect(self._on_server_remove)
        page.server_start_requested.connect(self.start)
        page.server_enabled_changed.connect(self._on_server_enabled)
        page.tool_enabled_changed.connect(self._on_tool_enabled)
        page.permission_changed.connect(self._on_permission_changed)
        page.destroyed.connect(self._on_page_gone)
        self.refresh()

    @Slot()
    def _on_page_gone(self) -> None:
        self.page = None

    def refresh(self) -> None:
        page, tools = self.page, self.tools
        if page is None:
            return
        settings = tools.settings
        page.set_builtins(settings.builtin, settings.folders)
        stored = tools.servers.servers()
        page.set_servers(
            [
                ServerRow(
                    s.name, s.url or " ".join([s.command, *s.args]), s.enabled,
                    tools.server_status(s.name),
                )
                for s in stored
            ]
        )  # fmt: skip
        rules, chat = tools.rules, self._current_chat()
        groups: list[ToolGroup] = []
        if settings.builtin:
            groups.append(
                ToolGroup(
                    "", rules.choice("", ANY_TOOL, chat),
                    tuple(
                        ToolRow("", n, _BUILTIN_ABOUT[n], True, rules.choice("", n, chat))
                        for n in BUILTIN_NAMES
                        if n in settings.builtin
                    ),
                )
            )  # fmt: skip
        for s in stored:
            rows = tuple(
                ToolRow(
                    s.name, t.name, t.description, t.name not in s.disabled_tools,
                    rules.choice(s.name, t.name, chat),
                )
                for t in tools.running_tools(s.name)
            )  # fmt: skip
            groups.append(ToolGroup(s.name, rules.choice(s.name, ANY_TOOL, chat), rows))
        page.set_tools(groups)

    # -- built-in tools -------------------------------------------------------------------

    def _set(self, **changes: object) -> None:
        s = self.tools.settings
        values = {"builtin": s.builtin, "folders": s.folders, "max_rounds": s.max_rounds}
        values.update(changes)
        try:
            self.tools.set_settings(ToolSettings(**values))  # type: ignore[arg-type]
        except OSError as exc:
            self.notifier.error(f"The tool settings could not be saved: {exc.strerror or exc}.")
        self.refresh()

    @Slot(str, bool)
    def _on_builtin_toggled(self, name: str, on: bool) -> None:
        now = set(self.tools.settings.builtin)
        (now.add if on else now.discard)(name)
        self._set(builtin=tuple(n for n in BUILTIN_NAMES if n in now))

    @Slot(str)
    def _on_folder_add(self, folder: str) -> None:
        if folder not in self.tools.settings.folders:
            self._set(folders=(*self.tools.settings.folders, folder))

    @Slot(str)
    def _on_folder_remove(self, folder: str) -> None:
        self._set(folders=tuple(f for f in self.tools.settings.folders if f != folder))

    # -- servers --------------------------------------------------------------------------

    @Slot(str, str, object, object)
    def _on_server_add(
        self, name: str, command: str, args: tuple[str, ...], env: dict[str, str]
    ) -> None:
        is_url = command.startswith(("http://", "https://"))
        try:
            self.tools.servers.add(
                name,
                command="" if is_url else command,
                args=args,
                url=command if is_url else "",
                env=env,
            )
        except (McpConfigError, ValueError) as exc:
            self.notifier.error(str(exc))
            return
        self.refresh()
        self.start(name)

    @Slot(str)
    def _on_server_import(self, path: str) -> None:
        try:
            names = self.tools.servers.import_json(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            self.notifier.error(f"{path} could not be read: {exc.strerror or exc}.")
            return
        except (McpConfigError, ValueError) as exc:
            self.notifier.error(f"Nothing was imported from {path}: {exc}")
            return
        self.notifier.info(
            f"Imported {len(names)} tool server(s): {', '.join(names) or 'none'}. Each starts "
            "when a reply first needs it, or with Start."
        )
        self.refresh()

    @Slot(str)
    def _on_server_remove(self, name: str) -> None:
        self.tools.stop_server(name)
        self.tools.servers.remove(name)
        self.refresh()

    @Slot(str, bool)
    def _on_server_enabled(self, name: str, on: bool) -> None:
        self.tools.servers.set_enabled(name, on)
        if not on:
            self.tools.stop_server(name)
        self.refresh()

    @Slot(str, str, bool)
    def _on_tool_enabled(self, server: str, tool: str, on: bool) -> None:
        if server:
            self.tools.servers.set_tool_enabled(server, tool, on)
        else:
            self._on_builtin_toggled(tool, on)

    @Slot(str, str, object)
    def _on_permission_changed(self, server: str, tool: str, choice: Choice) -> None:
        chat = self._current_chat()
        if choice is Choice.CHAT and chat is None:
            self.notifier.error(
                "No chat is open, so nothing can be allowed for it: open or start a chat, "
                "then choose Allow in this chat again."
            )
            QTimer.singleShot(0, self.refresh)
            return
        self.tools.rules.choose(server, tool, choice, chat)
        try:
            self.tools.save_rules()
        except OSError as exc:
            self.notifier.error(f"The tool permissions could not be saved: {exc.strerror or exc}.")
        # A server's rule changes what its tools' rows say ("As the server" under Never);
        # later: the combo that asked is inside the rows being replaced.
        QTimer.singleShot(0, self.refresh)

    @Slot(str)
    def start(self, name: str) -> None:
        """Start or restart ``name`` off the GUI thread; the page says how it went."""
        if self.page is not None:
            self.page.set_status(f"{name}: starting…")

        def op(_report: object, _cancel: threading.Event) -> tuple[str, list[ToolSpec], str]:
            try:
                return name, self.tools.start_server(name), ""
            except McpError as exc:
                return name, [], str(exc)

        def done(result: tuple[str, list[ToolSpec], str]) -> None:
            _name, specs, error = result
            self.refresh()
            if self.page is not None:
                self.page.set_status(error or f"{name}: running, {len(specs)} tools.")

        job = run_in_background(op, done, self.notifier.error, what=f"Starting {name}")
        self._jobs = [j for j in self._jobs if j.running] + [job]

    def shutdown(self) -> None:
        for job in self._jobs:
            job.join()
