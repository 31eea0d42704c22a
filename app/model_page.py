"""The Settings window's Model page, and the models folder and token on its Privacy &
storage page, on top of the model manager's public API.

Shows the catalog's quantizations of a family (or the person's own files) with size,
memory estimate, fit badge and state; passes the person's choices, imports, deletions
and moves to the manager; follows what the manager says (``said``, ``progressed``,
``progress_ended``, ``changed``). Slow looks (the keyring, the Hugging Face cache) run
in the background when the window opens and fill in when they are done.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Slot

from app.background import Report, run_in_background
from app.connections import connection_of
from app.folders import Folder, Folders
from app.model_jobs import BADGE_TEXT, LOCAL_FILES
from app.model_manager import ModelManager
from engine.gguf.header import GGUFError
from engine.models.hf_cache import CachedFile
from engine.models.library import InstalledModel, ModelRow
from engine.models.speed import TYPICAL_CONTEXT
from engine.settings import Model
from engine.units import format_bytes
from ui.quant_rows import QuantRow
from ui.settings_dialog import SettingsDialog

if TYPE_CHECKING:  # keyring loads when the token is first needed, not at start
    from engine.models.hf_token import TokenStatus, TokenStore

log = logging.getLogger(__name__)


class ModelPage(QObject):
    """The model parts of one open Settings window at a time. Built once, where the app
    is wired (``ModelPage(manager, folders)``); ``attach`` gives it each new window."""

    def __init__(
        self, manager: ModelManager, folders: Folders, parent: QObject | None = None
    ) -> None:
        super().__init__(parent)
        self.manager = manager
        self.folders = folders
        self.dialog: SettingsDialog | None = None
        self._family = ""  # the family whose quantizations are shown
        self._measuring = False  # the GPU question and the memory speed, in the background
        manager.said.connect(self._on_said)
        manager.progressed.connect(self._on_progressed)
        manager.progress_ended.connect(self._on_progress_ended)
        manager.changed.connect(self.refresh)
        manager.imported.connect(self._on_imported)
        if manager.connections is not None:  # a server's list of models came in
            manager.connections.changed.connect(self.refresh)
        folders.models_dir_changed.connect(self._on_folder_changed)
        folders.chats_dir_changed.connect(self._on_folder_changed)

    def attach(self, dialog: SettingsDialog) -> None:
        self.dialog = dialog
        self._family = self._family_to_show()
        m = self.manager
        dialog.quant_selected.connect(m.select)
        dialog.family_selected.connect(self._on_family_selected)
        dialog.download_cancel_requested.connect(m.cancel_download)
        dialog.delete_model_requested.connect(m.files.delete)
        dialog.move_models_requested.connect(m.files.move_models)
        dialog.import_requested.connect(m.files.import_file)
        dialog.token_set_requested.connect(self._on_token_set)
        dialog.token_clear_requested.connect(self._on_token_clear)
        dialog.measure_requested.connect(lambda: self.measure(remeasure=True))
        dialog.destroyed.connect(self._on_dialog_gone)
        self._on_folder_changed()
        self.refresh()
        if m.downloading is not None:
            dialog.show_download(0.0, f"Downloading {m.downloading.name}…")
        # The keyring (D-Bus) and the Hugging Face cache can take seconds: not on the way
        # to the window; they fill in when they answer.
        dialog.set_token_status("Looking for a saved token…")
        self._token_op(lambda tokens: tokens.status())
        run_in_background(
            lambda _report, _cancel: m.service.scan_hf_cache(),
            self._on_hf_cache_scanned,
            lambda message: log.info("the Hugging Face cache was not scanned: %s", message),
            what="Looking in the Hugging Face cache",
        )
        service = m.service
        if service.devices is None or service.bandwidth is None:
            self.measure()  # once per machine: later windows read what was kept

    def _family_to_show(self) -> str:
        """The chosen family if the catalog has it, else the loaded model's, else the first."""
        families = [f for f, _ in self.manager.families()]
        chosen = self.manager.current_choice()[0]
        if chosen in families:
            return chosen
        info = self.manager.loaded
        entry = self.manager.service.entry_for_path(info.path) if info else None
        if entry is not None:
            return entry.family
        return families[0] if families else ""

    @Slot()
    def _on_dialog_gone(self) -> None:
        self.dialog = None

    # --- the list ------------------------------------------------------------------------
    def rows(self, family: str) -> list[QuantRow]:
        if family == LOCAL_FILES:
            return self._own_rows()
        if connection_of(family) is not None:
            return self._server_rows(family)
        m = self.manager
        loaded = m.loaded
        loaded_name = Path(loaded.path).name if loaded else ""
        downloading = m.downloading.id if m.downloading is not None else ""
        out = []
        for r in m.service.rows(family, m.estimate_options(), reclaimable=m.reclaimable()):
            entry, fit, plan = r.entry, r.fit.fit, r.fit.plan
            notes = [entry.quality.note if entry.quality else "", fit.warning or ""]
            if plan is not None:  # with a GPU its plan says where the layers go instead
                notes[1] = plan.sentence
            if r.cached is not None:
                notes.append(f"Already in your Hugging Face cache ({r.cached.path}): no download.")
            out.append(
                QuantRow(
                    name=entry.quantization,
                    size_bytes=entry.download_size,  # with its vision file
                    memory_bytes=r.ram_memory,
                    gpu_bytes=r.gpu_memory,
                    tokens_per_s=r.tokens_per_s,
                    reason=r.fit.reason,
                    fit=_fit_text(r),
                    installed=r.installed is not None,
                    recommended=r.recommended,
                    note="\n".join(n for n in notes if n),
                    in_use=entry.filename == loaded_name,
                    downloading=entry.id == downloading,
                    size_estimated=entry.size_estimated,
                    cached=r.cached is not None,
                    removable=entry.source.get("package") is None,  # not the starter model
                    partial=r.partial / entry.size if r.partial and entry.size else 0.0,
                )
            )
        return out

    def _server_rows(self, family: str) -> list[QuantRow]:
        """A connection's models, as its server last listed them."""
        name = connection_of(family) or ""
        connections = self.manager.connections
        endpoint = connections.get(name) if connections is not None else None
        listed = connections.models_of(name) if connections is not None else None
        loaded = self.manager.loaded
        if endpoint is None or listed is None:
            return []
        out = []
        for model in listed.models:
            path = f"{endpoint.base_url}/models/{model}"
            out.append(
                QuantRow(
                    name=model,
                    size_bytes=0,
                    memory_bytes=0,
                    fit="on the server",
                    installed=True,
                    recommended=False,
                    note=f"Runs on {name} ({endpoint.base_url}): the messages of a chat on it "
                    "go to that server.",
                    in_use=loaded is not None and loaded.path == path,
                    remote=True,
                    removable=False,
                )
            )
        return out

    def _server_title(self, family: str) -> str:
        name = connection_of(family) or ""
        connections = self.manager.connections
        endpoint = connections.get(name) if connections is not None else None
        if connections is None or endpoint is None:
            return f"There is no connection named {name} any more."
        listed = connections.models_of(name)
        where = f"{name} ({endpoint.base_url})"
        if listed is None:
            connections.ask_models(name)
            return f"Asking {where} for its models…"
        if listed.problem:
            return f"{listed.problem} Check the connection in Settings → Connections."
        if not listed.models:
            return f"{where} lists no models. Load one on the server, then look again."
        return (
            f"Models on {where}. The messages of a chat on one of them go to that server; "
            "models on this computer keep everything here."
        )

    def _own_rows(self) -> list[QuantRow]:
        m = self.manager
        loaded = m.loaded
        options, reclaimable = m.estimate_options(), m.reclaimable()
        out = []
        for own in m.service.own_files():  # headers read once per version of each file
            memory, badge, note = 0, "unknown", ""
            try:
                fit = m.service.fit(own.path, options, reclaimable=reclaimable)
                memory, badge, note = fit.estimate.total, BADGE_TEXT[fit.badge], fit.warning or ""
            except (GGUFError, OSError, ValueError, KeyError) as exc:
                note = f"Hearth cannot read this file's model parameters ({exc})."
            out.append(
                QuantRow(
                    name=str(own.path),
                    label=f"{own.path.name} ({own.quantization or '?'})",
                    size_bytes=own.size,
                    memory_bytes=memory,
                    fit=badge,
                    installed=True,
                    recommended=False,
                    note=note,
                    in_use=loaded is not None and Path(loaded.path) == own.path,
                )
            )
        return out

    @Slot()
    def refresh(self) -> None:
        dialog = self.dialog
        if dialog is None:
            return
        m = self.manager
        family, choice = m.current_choice()
        shown = self._family or family
        info = m.loaded
        names = dict(m.families())
        now = f"In use: {info.name} {info.quantization}." if info else "No model is loaded."
        limits = [e.arch.n_ctx_train for e in m.service.entries(shown) if e.arch is not None]
        ctx = min([m.context_wanted(), *limits])  # a model that reads less: at what it reads
        title = (
            f"{now} Memory estimates are for {ctx:,} tokens of context on this computer "
            f"({m.service.hardware().total_ram / 2**30:.1f} GiB of memory)."
        )
        dialog.set_families(m.families(), shown)
        if connection_of(shown) is not None:
            dialog.set_model(
                self._server_title(shown),
                self.rows(shown),
                choice if shown == family else "",
                names.get(shown, ""),
                with_auto=False,
            )
            dialog.set_speed_note("", measuring=self._measuring)
            return
        dialog.set_model(
            title,
            self.rows(shown),
            choice if shown == family else "",
            names.get(shown, ""),
            with_auto=shown != LOCAL_FILES,  # "Auto" picks among a catalog family only
        )
        dialog.set_estimate(m.estimate_text)
        dialog.set_speed_note(self._speed_note(), measuring=self._measuring)
        self._show_vision(dialog)

    def _show_vision(self, dialog: SettingsDialog) -> None:
        """The "Let it see images" switch for the model in use, if a vision file made for
        it lies beside it (also when its vision is off now: that is what the switch is
        for); hidden for a model on a server or without one."""
        from engine.gguf.header import read_gguf_arch
        from engine.gguf.projector import find_projector

        info = self.manager.loaded
        path = Path(info.path) if info is not None else None
        found = None
        if info is not None and path is not None and path.is_file():
            try:
                found, _ = find_projector(path, read_gguf_arch(path).n_embd)
            except (GGUFError, OSError, ValueError, KeyError):
                found = None  # a file Hearth cannot read: no switch (the load said why)
        if info is None or path is None or found is None:
            dialog.vision_toggle.show_for("", "", 0, "")
            return
        try:
            size = found.path.stat().st_size
        except OSError:
            size = 0
        no_vision = self.manager.settings[Model.NO_VISION]
        dialog.vision_toggle.show_for(path.name, info.name, size, no_vision)

    # --- this machine's GPU and memory speed ------------------------------------------------
    def _speed_note(self) -> str:
        service = self.manager.service
        if self._measuring:
            return "Measuring this computer's memory speed for the speed estimates…"
        bandwidth, devices = service.bandwidth, service.devices
        if bandwidth is None or devices is None:
            return "Speeds appear once this computer's memory speed is measured."
        gpu = service.device()
        where = (
            f"; {gpu.name} has {format_bytes(gpu.free_memory)} free"
            if gpu is not None
            else "; no GPU this build of llama.cpp can use"
        )
        return (
            f"Speeds are estimates for a {TYPICAL_CONTEXT:,}-token chat, from this "
            f"computer's memory speed ({bandwidth.bytes_per_s / 1e9:.0f} GB/s, measured "
            f"{bandwidth.measured_at[:10]}){where}."
        )

    def measure(self, *, remeasure: bool = False) -> None:
        """Ask llama.cpp for the GPU and measure the memory's speed (cached: once, unless
        ``remeasure``), in the background; the list fills in with speeds when done."""
        if self._measuring:
            return
        service, folder = self.manager.service, self.folders.paths.data_dir
        self._measuring = True
        if self.dialog is not None:
            self.dialog.set_speed_note(self._speed_note(), measuring=True)

        def work(_report: Report, _cancel: threading.Event) -> None:
            from engine.inference.devices import probe_devices

            service.measure_machine(folder, probe_devices, remeasure=remeasure)

        def done(_result: object = None) -> None:
            self._measuring = False
            self.refresh()

        def failed(message: str) -> None:
            log.warning("measuring this computer failed: %s", message)
            done()

        run_in_background(work, done, failed, what="Measuring this computer's memory speed")

    @Slot(str)
    def _on_family_selected(self, family: str) -> None:
        self._family = family
        self.refresh()

    @Slot(object)
    def _on_hf_cache_scanned(self, _found: tuple[CachedFile, ...]) -> None:
        self.refresh()

    # --- what the manager says --------------------------------------------------------------
    @Slot(str)
    def _on_said(self, text: str) -> None:
        if self.dialog is not None:
            self.dialog.download_label.setText(text)

    @Slot(object, str)
    def _on_progressed(self, fraction: float | None, text: str) -> None:
        if self.dialog is not None:
            self.dialog.show_download(fraction if fraction is not None else 0.0, text)

    @Slot(str)
    def _on_progress_ended(self, text: str) -> None:
        if self.dialog is not None:
            self.dialog.show_download(None, text)

    @Slot(object)
    def _on_imported(self, model: InstalledModel) -> None:
        self._family = LOCAL_FILES if model.entry is None else model.entry.family
        self.refresh()

    @Slot()
    @Slot(object)
    def _on_folder_changed(self, _folder: object = None) -> None:
        if self.dialog is not None:
            self.dialog.set_folders(
                {Folder.CHATS: self.folders.chats_dir, Folder.MODELS: self.folders.models_dir}
            )

    # --- the Hugging Face token (the keyring is asked off the GUI thread) --------------------
    @Slot(str)
    def _on_token_set(self, token: str) -> None:
        self._token_op(lambda tokens: _set_token(tokens, token))

    @Slot()
    def _on_token_clear(self) -> None:
        self._token_op(_clear_token)

    def _token_op(self, op: Callable[[TokenStore], TokenStatus | str]) -> None:
        manager = self.manager

        def work(_report: Report, _cancel: threading.Event) -> TokenStatus | str:
            return op(manager.tokens)

        run_in_background(
            work, self._show_token_status, self._show_token_status, what="Asking the keyring"
        )

    def _show_token_status(self, status: TokenStatus | str) -> None:
        if self.dialog is None:
            return
        if isinstance(status, str):  # a sentence: the token was refused, or the keyring failed
            self.dialog.set_token_status(status)
            return
        if status.has_token:
            keyring = status.storage == "keyring"  # TokenStorage.KEYRING
            where = "in your system's keyring" if keyring else "until Hearth closes"
            text = f"A token is saved {where}."
        else:
            text = "No token saved. Only gated models need one."
        self.dialog.set_token_status(f"{text} {status.note}".strip())


def _fit_text(row: ModelRow) -> str:
    """The badge: with a GPU, where it runs ("fits on the GPU", "GPU + RAM", ...)."""
    plan = row.fit.plan
    if plan is None:
        return BADGE_TEXT[row.badge]
    return "tight" if plan.tight else plan.badge.label


def _set_token(tokens: TokenStore, token: str) -> TokenStatus | str:
    try:
        return tokens.set(token)
    except ValueError as exc:  # not a token: the sentence says what one looks like
        return str(exc)


def _clear_token(tokens: TokenStore) -> TokenStatus:
    tokens.clear()
    return tokens.status()
