"""The Settings window's Model page and the models folder, for ModelManager.

Shows the catalog's quantizations of a family (or the person's own files) with
size, memory estimate, fit badge and state; passes choices to the manager;
imports, deletes and moves model files on a thread of their own, with progress
in the dialog. The Hugging Face token is entered here too.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Slot

from app.model_jobs import BADGE_TEXT, LOCAL_FILES, MoveJob, gb, label
from engine.errors import KnownError
from engine.gguf.header import GGUFError, read_gguf_arch
from engine.gguf.validate import validate_gguf
from engine.models.folder import FolderMove, plan_move
from engine.models.library import (
    InstalledModel,
    delete_model,
    import_gguf,
    installed_models,
    model_rows,
)
from engine.models.memory import check_fit, estimate_for_options
from ui.settings_dialog import QuantRow, SettingsDialog

if TYPE_CHECKING:
    from app.model_manager import ModelManager

log = logging.getLogger(__name__)


class ModelPage(QObject):
    """The Model page of one open Settings window at a time, and file operations."""

    def __init__(self, manager: ModelManager) -> None:
        super().__init__(manager)
        self.m = manager
        self.dialog: SettingsDialog | None = None
        self._dialog_family = ""
        self._mover: MoveJob | None = None  # a move or an import in progress
        self._folder_move: FolderMove | None = None

    @property
    def busy(self) -> bool:
        """A move or an import is in progress."""
        return self._mover is not None

    def cancel(self) -> None:
        if self._mover is not None:
            self._mover.cancel.set()

    def shutdown(self) -> None:
        if self._mover is not None:
            self._mover.cancel.set()
            self._mover.join(60.0)  # moving back what was moved: never leave two halves

    def attach(self, dialog: SettingsDialog) -> None:
        self.dialog = dialog
        self._dialog_family = self._family_to_show()
        dialog.quant_selected.connect(self._on_dialog_quant)
        dialog.family_selected.connect(self._on_dialog_family)
        dialog.download_cancel_requested.connect(self.m.cancel_download)
        dialog.delete_model_requested.connect(self._on_delete_model)
        dialog.token_set_requested.connect(self._on_token_set)
        dialog.token_clear_requested.connect(self._on_token_clear)
        dialog.move_models_requested.connect(self.move_models)
        dialog.import_requested.connect(self.import_file)
        dialog.set_folders(str(self.m.paths.chats_dir), str(self.m.models_dir))
        dialog.destroyed.connect(self._on_dialog_gone)
        self.refresh()
        self._show_token_status()
        if self.m._job is not None:
            self.m._show_progress(None, f"Downloading {label(self.m._job.entry)}…")

    def _family_to_show(self) -> str:
        """The chosen family if the catalog has it, else the loaded model's, else the first."""
        families = [f for f, _ in self.m.families()]
        chosen = self.m.current_choice()[0]
        if chosen in families:
            return chosen
        info = self.m.chat.model_info
        entry = self.m.entry_for_path(info.path) if info else None
        if entry is not None:
            return entry.family
        return families[0] if families else ""

    @Slot()
    def _on_dialog_gone(self) -> None:
        self.dialog = None

    def rows(self, family: str) -> list[QuantRow]:
        if family == LOCAL_FILES:
            return self._local_rows()
        loaded = self.m.chat.model_info
        loaded_name = Path(loaded.path).name if loaded else ""
        downloading = self.m._job.entry.id if self.m._job is not None else ""
        out = []
        for r in model_rows(
            self.m.entries(family),
            self.m.models_dir,
            self.m.hardware(),
            self.m.estimate_options(),
            reclaimable=self.m._reclaimable(),
        ):
            entry, fit = r.entry, r.fit.fit
            notes = [entry.quality.note if entry.quality else "", fit.warning or ""]
            if r.cached is not None:
                notes.append(f"Already in your Hugging Face cache ({r.cached.path}): no download.")
            out.append(
                QuantRow(
                    name=entry.quantization,
                    size_bytes=entry.size,
                    memory_bytes=r.memory,
                    fit=BADGE_TEXT[r.badge],
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

    def _local_rows(self) -> list[QuantRow]:
        loaded = self.m.chat.model_info
        options = self.m.estimate_options()
        hw = self.m.hardware()
        out = []
        for m in installed_models(self.m.models_dir, self.m.catalog):
            if m.entry is not None:
                continue
            memory, badge, note = 0, "unknown", ""
            try:
                est = estimate_for_options(read_gguf_arch(m.path), options)
                check = check_fit(est, hw, reclaimable=self.m._reclaimable())
                memory, badge, note = est.total, BADGE_TEXT[check.badge], check.warning or ""
            except (GGUFError, OSError, ValueError, KeyError) as exc:
                note = f"Hearth cannot read this file's model parameters ({exc})."
            out.append(
                QuantRow(
                    name=str(m.path),
                    label=f"{m.path.name} ({m.quantization or '?'})",
                    size_bytes=m.size,
                    memory_bytes=memory,
                    fit=badge,
                    installed=True,
                    recommended=False,
                    note=note,
                    in_use=loaded is not None and Path(loaded.path) == m.path,
                )
            )
        return out

    def refresh(self) -> None:
        dialog = self.dialog
        if dialog is None:
            return
        family, choice = self.m.current_choice()
        shown = self._dialog_family or family
        info = self.m.chat.model_info
        names = dict(self.m.families())
        now = f"In use: {info.name} {info.quantization}." if info else "No model is loaded."
        ctx = self.m._context_wanted()
        limits = [e.arch.n_ctx_train for e in self.m.entries(shown) if e.arch is not None]
        ctx = min([ctx, *limits])  # a model that reads less is estimated at what it reads
        title = (
            f"{now} Memory estimates are for {ctx:,} tokens of context on this computer "
            f"({self.m.hardware().total_ram / 2**30:.1f} GiB of memory)."
        )
        dialog.set_families(self.m.families(), shown)
        dialog.set_model(
            title,
            self.rows(shown),
            choice if shown == family else "",
            names.get(shown, ""),
            with_auto=shown != LOCAL_FILES,  # "Auto" picks among a catalog family only
        )
        dialog.set_estimate(self.m.estimate_text)

    @Slot(str, str)
    def _on_dialog_quant(self, family: str, choice: str) -> None:
        self.m.select(family, choice)

    @Slot(str)
    def _on_dialog_family(self, family: str) -> None:
        self._dialog_family = family
        self.refresh()

    @Slot(str, str)
    def _on_delete_model(self, family: str, choice: str) -> None:
        if family == LOCAL_FILES:
            path, name, size = Path(choice), Path(choice).name, Path(choice).stat().st_size
        else:
            target = self.m.resolve(family, choice)
            if target.entry is None or target.path is None:
                return
            path, name, size = target.path, label(target.entry), target.entry.size
        info = self.m.chat.model_info
        if info is not None and Path(info.path) == path:
            self.m._say(f"{name} is in use. Switch to another model to delete it.")
            return
        if not self.m._ask(
            "Delete the model file?",
            f"Delete {name} ({gb(size)}) from {self.m.models_dir}? "
            + ("You can download it again later." if family != LOCAL_FILES else ""),
            "Delete",
        ):
            return
        try:
            delete_model(path, self.m.models_dir)
        except KnownError as exc:
            self.m._say(exc.message)
            return
        if str(self.m.settings["model.path"] or "") == str(path):
            self.m.settings.set("model.path", "")
        log.info("deleted %s", path)
        self.m._say(f"Deleted {name}.")
        self.refresh()

    @Slot(str)
    def import_file(self, source: str) -> None:
        """Copy a .gguf of the person's own into the models folder (validated first)."""
        if self.m._job is not None or self._mover is not None:
            self.m._say("Wait for the download or move in progress to finish, then import.")
            return
        src = Path(source)
        try:
            validate_gguf(src)  # fast: a bad file is refused before anything is copied
        except KnownError as exc:
            self.m._say(exc.message)
            return
        self._mover = MoveJob(
            lambda progress, cancel: import_gguf(
                src, self.m.models_dir, catalog=self.m.catalog, on_progress=progress, cancel=cancel
            ),
            f"Importing {src.name}",
        )
        self._mover.progress.connect(self._on_move_progress)
        self._mover.finished.connect(self._on_imported)
        self._mover.failed.connect(self._on_move_failed)
        self.m._show_progress(0.0, f"Importing {src.name}…")

    @Slot(object)
    def _on_imported(self, model: object) -> None:
        mover, self._mover = self._mover, None
        if mover is not None:
            mover.join(1.0)
        assert isinstance(model, InstalledModel)
        self._dialog_family = LOCAL_FILES if model.entry is None else model.entry.family
        name = model.path.name
        self.m._end_download(f"Imported {name}. Choose it and press Use to chat with it.")

    @Slot(str)
    def _on_token_set(self, token: str) -> None:
        try:
            self.m.tokens.set(token)
        except ValueError as exc:
            if self.dialog is not None:
                self.dialog.set_token_status(str(exc))
            return
        self._show_token_status()

    @Slot()
    def _on_token_clear(self) -> None:
        self.m.tokens.clear()
        self._show_token_status()

    def _show_token_status(self) -> None:
        if self.dialog is None:
            return
        status = self.m.tokens.status()
        if status.has_token:
            where = (
                "in your system's keyring" if status.storage == "keyring" else "until Hearth closes"
            )
            text = f"A token is saved {where}."
        else:
            text = "No token saved. Only gated models need one."
        self.dialog.set_token_status(f"{text} {status.note}".strip())

    # --- the models folder --------------------------------------------------------------------
    @Slot(str)
    def move_models(self, folder: str) -> None:
        """Move every model file to ``folder`` (asks first), then use it."""
        if self.m._job is not None or self._mover is not None:
            self.m._say("Wait for the download to finish (or cancel it), then move the models.")
            return
        try:
            move = plan_move(self.m.models_dir, Path(folder))
        except KnownError as exc:
            self.m._say(exc.message)
            return
        if not self.m._ask(
            "Move the models?",
            f"Move {_models_text(move)} ({gb(move.total_bytes)}) from {move.source} to "
            f"{move.target}? Hearth keeps running; chatting works during the move.",
            "Move",
        ):
            return
        self._folder_move = move
        self._mover = MoveJob(
            lambda progress, cancel: move.run(on_progress=progress, cancel=cancel),
            f"Moving the models to {move.target}",
        )
        self._mover.progress.connect(self._on_move_progress)
        self._mover.finished.connect(self._on_moved)
        self._mover.failed.connect(self._on_move_failed)
        self.m._show_progress(0.0, f"Moving the models to {move.target}…")

    @Slot(object, object)
    def _on_move_progress(self, done: int, total: int) -> None:
        if self._mover is not None:
            text = f"{self._mover.what}: {gb(done)} of {gb(total)}"
            self.m._show_progress(done / total if total else 1.0, text)

    @Slot(object)
    def _on_moved(self, _result: object) -> None:
        mover, self._mover = self._mover, None
        move, self._folder_move = self._folder_move, None
        if mover is None or move is None:
            return
        mover.join(1.0)
        old, new = move.source, move.target
        default = (self.m.paths.data_dir / "models").resolve()
        self.m.settings.set("storage.models_dir", "" if new == default else str(new))
        self.m.paths = self.m.paths.with_models_dir(None if new == default else new)
        self.m.chat.engine.worker.set_models_dir(new)
        path = Path(self.m.chat.model_path) if self.m.chat.model_path else None
        if path is not None and path.resolve().parent == old:
            self.m.chat.model_path = str(new / path.name)
        info = self.m.chat.model_info
        if info is not None and Path(info.path).resolve().parent == old:
            self.m.chat.model_info = replace(info, path=str(new / Path(info.path).name))
        own = Path(str(self.m.settings["model.path"] or ""))
        if own.name and own.resolve().parent == old:  # a file of one's own moved with them
            self.m.settings.set("model.path", str(new / own.name))
        log.info("moved the models from %s to %s", old, new)
        if self.dialog is not None:
            self.dialog.set_folders(str(self.m.paths.chats_dir), str(new))
        self.m._end_download(f"The models are now in {new}.")

    @Slot(str)
    def _on_move_failed(self, message: str) -> None:
        mover, self._mover = self._mover, None
        if mover is not None:
            mover.join(1.0)
        self.m._end_download(message)


def _models_text(move: FolderMove) -> str:
    """ "2 models", "1 model and 1 unfinished download" (records beside them not counted)."""
    models = sum(1 for f in move.files if f.suffix == ".gguf" and len(f.parts) == 1)
    parts = sum(1 for f in move.files if f.parts[0] == ".downloads" and f.suffix == ".incomplete")
    text = f"{models} model{'' if models == 1 else 's'}"
    if parts:
        text += f" and {parts} unfinished download{'' if parts == 1 else 's'}"
    return text
