"""Images in the window (issue 13): what the attach button, a paste or a drop brings is
read and checked off the GUI thread (``engine.images``), waits in the tray above the
composer, and is sent with the next message; thumbnails in the chat and the larger
view come from the chat store.

Nothing is dropped silently: a file that is not an image, a damaged one, an enormous
one, each gets its sentence; a model that cannot see says so when someone tries, and
offers a family that can.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QObject, Slot
from PySide6.QtGui import QImage

from app.background import BackgroundOp, run_in_background
from app.engine_client import EngineClient
from app.notifier import Notifier
from engine.errors import KnownError
from engine.history.store import ChatStore
from engine.history.types import StoredMessage
from engine.images import ImageError, image_part, read_image_file, thumbnail_png
from engine.models.catalog import CatalogEntry
from engine.types import AttachmentPart, ImagePart, ModelInfo
from ui.image_viewer import ImageViewer
from ui.main_window import MainWindow

log = logging.getLogger(__name__)

TRAY_THUMB = 128  # pixels: the tray shows 64, sharp on a 2x screen
CHAT_THUMB = 240  # the chat shows up to 120 high
VIEWER_MAX = 2048  # the larger view
_THUMBS_KEPT = 64


@dataclass(frozen=True, slots=True)
class _Read:
    part: ImagePart
    png: bytes  # the tray's thumbnail


def _read_all(paths: Sequence[str], images: Sequence[bytes]) -> tuple[list[_Read], list[str]]:
    """Each file and each pasted image, read and checked: what can be attached, and a
    sentence for each that cannot."""
    read: list[_Read] = []
    problems: list[str] = []
    sources: list[str | bytes] = [*paths, *images]
    for source in sources:
        try:
            if isinstance(source, str):
                part = read_image_file(Path(source))
            else:
                part = image_part(source, "")
            read.append(_Read(part, thumbnail_png(part.data, TRAY_THUMB, part.name)))
        except KnownError as exc:
            problems.append(exc.message)
    return read, problems


class AttachmentController(QObject):
    """The images waiting to be sent, and the chat's thumbnails and larger view."""

    def __init__(
        self,
        window: MainWindow,
        store: ChatStore,
        engine: EngineClient,
        notifier: Notifier,
        *,
        vision_family: Callable[[], tuple[str, str] | None] = lambda: None,
        switch_family: Callable[[str], None] = lambda _family: None,
        current_conversation: Callable[[], int | None] = lambda: None,
        parent: QObject | None = None,
    ) -> None:
        """``vision_family()``: (family id, name) of a catalog model that can see, to
        offer when the loaded one cannot; ``switch_family(id)`` switches to it."""
        super().__init__(parent)
        self.window = window
        self.store = store
        self.engine = engine
        self.notifier = notifier
        self._vision_family = vision_family
        self._switch_family = switch_family
        self._current = current_conversation
        self._pending: OrderedDict[str, ImagePart] = OrderedDict()
        self._thumbs: OrderedDict[str, QImage] = OrderedDict()
        self._reading: BackgroundOp[tuple[list[_Read], list[str]]] | None = None
        self.viewer: ImageViewer | None = None  # the larger view open now (tests look)
        window.media_received.connect(self._on_media)
        window.attachment_tray.removed.connect(self._on_removed)
        window.chat_view.set_image_source(self.thumbnail)
        window.chat_view.image_open_requested.connect(self.open_image)
        engine.model_changed.connect(self._on_model_changed)
        engine.image_progress.connect(self._on_image_progress)
        self._on_model_changed(engine.model_info, "")

    # --- what the reply controller asks -------------------------------------------------
    def pending(self) -> tuple[AttachmentPart, ...]:
        return tuple(self._pending.values())

    def refusal(self) -> str:
        """Why the waiting images cannot be sent now ("" if they can)."""
        if not self._pending:
            return ""
        info = self.engine.model_info
        if info is not None and info.vision:
            return ""
        return self._cannot_see_sentence(info) + " Remove the images to send the text alone."

    def sent(self) -> None:
        """The message and its images are stored: the tray empties."""
        self._pending.clear()
        self.window.attachment_tray.clear()

    def edit(self, msg: StoredMessage) -> None:
        """Editing a question: its images wait in the tray again (removable)."""
        self.sent()
        try:
            parts = self.store.with_data(msg.attachments)
        except KnownError as exc:
            self.notifier.known(exc)
            return
        for part in parts:
            if isinstance(part, ImagePart) and part.data:
                self._add(_Read(part, thumbnail_png(part.data, TRAY_THUMB, part.name)))

    @property
    def busy(self) -> bool:
        return self._reading is not None

    # --- adding -------------------------------------------------------------------------
    @Slot(list, list)
    def _on_media(self, paths: list[str], images: list[bytes]) -> None:
        info = self.engine.model_info
        if info is not None and not info.vision and not self._offer_switch(info):
            return
        if self._reading is not None:
            self.notifier.info("Still reading the images before; try again in a moment.")
            return
        self._reading = run_in_background(
            lambda _report, _cancel: _read_all(paths, images),
            self._on_read,
            self._on_read_failed,
            what="Reading the images",
        )

    def _on_read(self, result: tuple[list[_Read], list[str]]) -> None:
        self._reading = None
        read, problems = result
        for item in read:
            self._add(item)
        if problems:
            self.notifier.error(" ".join(problems))

    def _on_read_failed(self, sentence: str) -> None:
        self._reading = None
        self.notifier.error(sentence)

    def _add(self, item: _Read) -> None:
        part = item.part
        self._pending[part.sha256] = part
        pixels = f"{part.width}×{part.height}, " if part.width else ""
        tip = f"{part.name or 'Pasted image'} ({pixels}{part.size / 1e6:.1f} MB)"
        self.window.attachment_tray.add(part.sha256, part.name or "pasted", item.png, tip)

    @Slot(str)
    def _on_removed(self, sha: str) -> None:
        self._pending.pop(sha, None)

    # --- a model that cannot see ------------------------------------------------------------
    def _cannot_see_sentence(self, info: ModelInfo | None) -> str:
        name = info.name if info is not None else "No model is loaded, so Hearth"
        family = self._vision_family()
        can = f"; {family[1]} can" if family is not None else ""
        return f"{name} cannot see images{can}."

    def _offer_switch(self, info: ModelInfo) -> bool:
        """Ask to switch to a model that can see; True if the images are to be kept
        (the switch was chosen: they wait in the tray while it loads)."""
        family = self._vision_family()
        sentence = self._cannot_see_sentence(info)
        if family is not None and self.window.confirm(
            "Switch to a model that can see?",
            f"{sentence} Switch to {family[1]}?",
            "Your images wait above the message box while it loads.",
            f"Switch to {family[1]}",
        ):
            self._switch_family(family[0])
            return True
        self.notifier.error(f"{sentence} The images were not attached.")
        return False

    def _on_model_changed(self, info: ModelInfo | None, _error: str) -> None:
        self.window.set_can_see(info is not None and info.vision)

    @Slot(int, int, int)
    def _on_image_progress(self, _request: int, done: int, total: int) -> None:
        """Progress while the model's vision reads new images (Stop works meanwhile)."""
        which = f" {done + 1} of {total}" if total > 1 else ""
        self.notifier.info(f"Looking at the image{which}… (Esc stops)", 0)

    # --- the chat's thumbnails and the larger view ------------------------------------------
    def thumbnail(self, sha: str) -> QImage | None:
        found = self._thumbs.get(sha)
        if found is not None:
            self._thumbs.move_to_end(sha)
            return found
        try:
            data = self.store.attachment_data(sha)
            image = QImage.fromData(thumbnail_png(data, CHAT_THUMB)) if data else None
        except KnownError as exc:
            log.warning("no thumbnail for %s: %s", sha[:12], exc)
            return None
        if image is None or image.isNull():
            return None
        self._thumbs[sha] = image
        while len(self._thumbs) > _THUMBS_KEPT:
            self._thumbs.popitem(last=False)
        return image

    @Slot(str)
    def open_image(self, sha: str) -> None:
        part = self._shown_part(sha)
        try:
            data = self.store.attachment_data(sha)
            if data is None:
                raise ImageError("This image is no longer in the chat history.")
            png = thumbnail_png(data, VIEWER_MAX)
        except KnownError as exc:
            self.notifier.known(exc)
            return
        name = part.name if part is not None and part.name else "Pasted image"
        size = f"{part.width}×{part.height}" if part is not None and part.width else ""
        self.viewer = ImageViewer(png, name, size, self.window)
        self.viewer.show()

    def _shown_part(self, sha: str) -> ImagePart | None:
        conv_id = self._current()
        if conv_id is None:
            return None
        for msg in self.store.messages(conv_id):
            for part in msg.attachments:
                if isinstance(part, ImagePart) and part.sha256 == sha:
                    return part
        return None


def vision_family_of(catalog: Sequence[CatalogEntry], preferred: str) -> tuple[str, str] | None:
    """The catalog family to offer to someone whose model cannot see: the chosen
    family if it can, else the largest family that can. (id, name) or None."""
    seeing = [e for e in catalog if e.projector is not None and e.family]
    if not seeing:
        return None
    chosen = next((e for e in seeing if e.family == preferred), None)
    best = chosen or max(seeing, key=lambda e: e.family_rank)
    return best.family, best.name
