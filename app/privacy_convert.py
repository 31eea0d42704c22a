"""Encrypting, decrypting or re-keying the chats from the window, off the GUI thread.

A 500,000-message history takes about half a minute; the window stays usable for
reading meanwhile. The rules that keep it honest:

- It does not start while a reply is being written (the reply would be saved to the
  file being copied, and miss the copy); the person is told to wait or stop it.
- While it runs, the store refuses every write (``StoreDatabase.hold_writes``: its
  write-ahead log emptied into the file first, then SQLite's ``query_only``), so
  nothing can be written to the old file: sending says why and keeps the message in
  the box; renaming or deleting a chat says the same. Reading chats and searching work.
- The search indexer pauses (it writes).
- Quitting asks first; "Stop and quit" cancels it (``migrate.Cancelled``: the copy
  and the marker are removed, the chats stay as they were). A process that dies
  instead leaves the marker, and the next start finishes or undoes the conversion
  (``ChatLock.recover`` in ``open_at_start``) and says so.
- At the end the same ``ChatStore`` object is reopened on the converted file (or on
  the unchanged one after a failure), so every controller keeps its handle.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Signal

from app.background import BackgroundOp, Report, run_in_background
from app.notifier import NoticeKind
from engine.errors import KnownError
from engine.history import migrate
from engine.history.store import ChatStore
from ui.privacy_strip import ConversionStrip

if TYPE_CHECKING:
    from app.notifier import Notifier

log = logging.getLogger(__name__)

# The copy is most of the time; the checks (integrity, counts, searches) the rest.
COPY_SHARE = 90

HOLD_SENTENCE = (
    "{doing}: nothing can be saved until it is done (the strip above the box shows how far it is)."
)


@dataclass(frozen=True)
class Job:
    """What the window asked for: ``work`` converts (the store is held) and returns
    the key the file opens with afterwards; ``done`` is the sentence at the end."""

    doing: str  # "Encrypting your chats"
    checking: str  # "Checking the encrypted copy"
    work: Callable[
        [Callable[[float], None], Callable[[str], None], Callable[[], bool]], bytes | None
    ]
    done: Callable[[bytes | None], str]


class Conversion(QObject):
    """Runs one ``Job`` at a time and shows it in the strip."""

    finished = Signal(bool)  # ok (the store is reopened, the strip says how it ended)

    def __init__(
        self,
        store: ChatStore,
        strip: ConversionStrip,
        notifier: Notifier,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.store, self.strip, self.notifier = store, strip, notifier
        self._op: BackgroundOp[bytes | None] | None = None
        self._closed = False
        self.store_hold = ""  # the sentence writes get while held
        # Tests stop the work at a step (``migrate.STEPS``) to look at the window then;
        # it gets the cancel event too (a quit while it waits).
        self.pause: Callable[[str, threading.Event], None] = lambda step, cancel: None

    @property
    def running(self) -> bool:
        return self._op is not None

    def start(
        self, job: Job, old_key: bytes | None, on_end: Callable[[bool, bytes | None], None]
    ) -> bool:
        """Hold the store's writes and start ``job`` on a thread; False (and a
        ``KnownError``) if the store could not be held."""
        self.store_hold = HOLD_SENTENCE.format(doing=job.doing)
        self.store.hold_writes(self.store_hold)
        self._job, self._old_key, self._on_end = job, old_key, on_end
        self.strip.show_progress(0, f"{job.doing}… 0%. You can read your chats meanwhile.")
        pause = self.pause

        def op(report: Report, cancel: threading.Event) -> bytes | None:
            def progress(fraction: float) -> None:
                report(int(fraction * COPY_SHARE), 100)

            def step(name: str) -> None:
                if name == "copied":
                    report(COPY_SHARE, 100)
                pause(name, cancel)

            return job.work(progress, step, cancel.is_set)

        self._op = run_in_background(
            op,
            self._on_done,
            self._on_failed,
            what=job.doing,
            progress=self._on_progress,
            on_cancelled=self._on_cancelled,
            cancelled_by=(migrate.Cancelled,),
        )
        return True

    def _on_progress(self, done: int, total: int) -> None:
        if self._closed or self._op is None:
            return
        if done < COPY_SHARE:
            self.strip.show_progress(
                done * 100 // COPY_SHARE,
                f"{self._job.doing}… {done * 100 // COPY_SHARE}%. You can read your chats "
                "meanwhile; sending waits until it is done.",
            )
        else:
            self.strip.show_progress(None, f"{self._job.checking}…")

    def _end(self, ok: bool, key: bytes | None, sentence: str) -> None:
        self._op = None
        if self._closed:  # quit: the store closes with the app
            return
        try:
            self.store.close()
            self.store.reopen(key)
        except KnownError as e:
            log.warning("reopening the chat history after a conversion failed: %s", e)
            sentence = f"{sentence} {e.message}"
            ok = False
        errors = self.notifier.texts(NoticeKind.ERROR)
        if errors and errors[-1].startswith(self.store_hold):  # "nothing can be saved": over
            self.notifier.clear_error()
        if ok:  # the strip keeps it until closed; the status bar says it too
            self.strip.show_result(sentence)
            self.notifier.info(sentence)
        else:  # the banner, where every failure is said
            self.strip.hide()
            self.notifier.error(sentence)
        self._on_end(ok, key)
        self.finished.emit(ok)

    def _on_done(self, key: bytes | None) -> None:
        self._end(True, key, self._job.done(key))

    def _on_failed(self, sentence: str) -> None:
        self._end(False, self._old_key, sentence)

    def _on_cancelled(self) -> None:
        self._end(
            False, self._old_key, f"{self._job.doing} was stopped; your chats are as they were."
        )

    def cancel_and_wait(self) -> None:
        """On quit: stop the work (it finishes if it is past the swap) and wait for it,
        so the store is closed only after the conversion let go of the file."""
        self._closed = True
        op = self._op
        if op is not None:
            op.cancel()
            op.join()
        self._op = None  # its end is not heard any more (the app is closing)
