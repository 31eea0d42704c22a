"""Where the API's requests run: on the one thread that owns the model, one at a time.

A request becomes a ``Generation``: a job that runs on the engine's thread (the
window's engine QThread, behind and between the window's own replies; or, for
``hearth serve``, the ``ThreadRunner`` below) and hands its events to the HTTP
thread that waits for them through a queue. The HTTP thread never touches the
backend; it only sets the generation's ``cancel`` event (the client went away, the
server stops), which the backend checks between tokens.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Protocol

from app.serving.protocol import ApiError
from engine.errors import KnownError
from engine.inference.backend import ChatBackend, sampling_for
from engine.types import Event, FinishReason, ModelInfo, ReplyDone, Turn

__all__ = ["Generation", "Job", "Runner", "ThreadRunner"]

log = logging.getLogger(__name__)

# A job gets the backend loaded now (None: none is) on the engine's thread.
Job = Callable[[ChatBackend | None], None]


class Runner(Protocol):
    """The engine as the server sees it: jobs run in order on its thread."""

    def submit(self, job: Job, cancel: threading.Event) -> None:
        """Run ``job`` after those submitted before it; ``cancel`` may already be set."""
        ...

    def model(self) -> ModelInfo | None:
        """The model loaded now (any thread may ask), None while none is."""
        ...


@dataclass(frozen=True, slots=True)
class _Failed:
    error: ApiError


@dataclass(frozen=True, slots=True)
class _Started:
    at: float


_END = object()


class Generation:
    """One request's reply, made on the engine's thread and read on the HTTP thread."""

    def __init__(self, turn: Turn, *, answer_budget_given: bool) -> None:
        self.turn = turn
        self.cancel = threading.Event()
        self.queued_at = time.monotonic()
        self._answer_budget_given = answer_budget_given
        self._events: queue.SimpleQueue[object] = queue.SimpleQueue()

    # -- on the engine's thread --
    def run(self, backend: ChatBackend | None) -> None:
        """The job: stream ``backend``'s reply into the queue (never raises)."""
        put = self._events.put
        try:
            if self.cancel.is_set():
                return  # the client left while it waited
            if backend is None:
                put(_Failed(no_model()))
                return
            put(_Started(time.monotonic()))
            params = sampling_for(backend, self.turn)
            if self._answer_budget_given:  # thinking gets at most the answer's budget again
                params = replace(
                    params, max_thinking_tokens=min(params.max_thinking_tokens, params.max_tokens)
                )
            usage = backend.context_usage(self.turn, params)
            if not usage.prompt_fits:
                put(
                    _Failed(
                        ApiError(
                            400,
                            f"The messages are {usage.prompt_tokens} tokens; the model's "
                            f"context holds {usage.n_ctx}. Send fewer or shorter messages.",
                            code="context_length_exceeded",
                            param="messages",
                        )
                    )
                )
                return
            for event in backend.stream(self.turn, params, stop=self.cancel):
                put(event)
                if isinstance(event, ReplyDone) and event.reason is FinishReason.CANCELLED:
                    # The log says what a client that hung up cost (tests read it too).
                    log.info(
                        "API reply stopped after %d tokens: its client left or the server "
                        "is stopping",
                        event.stats.completion_tokens,
                    )
        except ValueError as exc:  # sampling that the model's defaults make invalid
            put(_Failed(ApiError(400, f"The sampling settings are not valid: {exc}.")))
        except KnownError as exc:
            log.warning("API generation failed: %s", exc, exc_info=True)
            put(_Failed(ApiError(500, exc.message, kind="server_error")))
        except Exception:
            log.exception("API generation crashed")
            put(
                _Failed(
                    ApiError(
                        500,
                        "The reply stopped because of an internal error in Hearth. Send the "
                        "request again; the details are in Hearth's log file.",
                        kind="server_error",
                    )
                )
            )
        finally:
            put(_END)

    # -- on the HTTP thread --
    def wait_start(self, gone: Callable[[], bool], poll_s: float = 0.1) -> float:
        """Wait until the engine starts this request; the seconds it waited. Raises the
        request's ``ApiError`` when it failed before starting, ``ConnectionError`` when
        ``gone()`` says the client left meanwhile (the request is cancelled)."""
        while True:
            try:
                item = self._events.get(timeout=poll_s)
            except queue.Empty:
                if gone():
                    self.cancel.set()
                    raise ConnectionError("the client left while its request waited") from None
                continue
            if isinstance(item, _Started):
                return item.at - self.queued_at
            if isinstance(item, _Failed):
                raise item.error
            raise ApiError(
                500, "The engine ended the request before it started.", kind="server_error"
            )

    def events(self, gone: Callable[[], bool], poll_s: float = 0.1) -> Iterator[list[Event]]:
        """The reply's events in batches (all that arrived since the last batch), until
        its ``ReplyDone``. Raises its ``ApiError`` if it fails, ``ConnectionError`` when
        the client leaves (the generation is cancelled)."""
        get = self._events.get
        while True:
            try:
                item = get(timeout=poll_s)
            except queue.Empty:
                if gone():
                    self.cancel.set()
                    raise ConnectionError("the client left") from None
                continue
            batch: list[Event] = []
            while True:
                if item is _END:
                    if batch:
                        yield batch
                    return
                if isinstance(item, _Failed):
                    if batch:
                        yield batch
                    raise item.error
                batch.append(item)  # type: ignore[arg-type]
                if isinstance(item, ReplyDone):
                    break
                try:
                    item = self._events.get_nowait()
                except queue.Empty:
                    break
            yield batch


def no_model() -> ApiError:
    return ApiError(
        503,
        "Hearth has no model loaded right now (one may be loading). Try again in a few "
        "seconds, or load a model in Hearth.",
        kind="server_error",
        code="model_not_loaded",
        retry_after=5,
    )


class ThreadRunner:
    """``hearth serve``'s engine: one thread that owns ``backend`` and runs the jobs in
    the order they came (as the window's engine thread does)."""

    def __init__(self, backend: ChatBackend) -> None:
        self._backend: ChatBackend | None = backend
        self._info = backend.info
        self._jobs: queue.SimpleQueue[tuple[Job, threading.Event] | None] = queue.SimpleQueue()
        self._live: set[threading.Event] = set()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="hearth-engine", daemon=True)
        self._thread.start()

    def submit(self, job: Job, cancel: threading.Event) -> None:
        with self._lock:
            self._live.add(cancel)
        self._jobs.put((job, cancel))

    def model(self) -> ModelInfo | None:
        return self._info if self._backend is not None else None

    def close(self) -> None:
        """Cancel what runs and waits, then free the model."""
        with self._lock:
            for cancel in self._live:
                cancel.set()
        self._jobs.put(None)
        self._thread.join()

    def _loop(self) -> None:
        while (item := self._jobs.get()) is not None:
            job, cancel = item
            try:
                job(self._backend)
            finally:
                with self._lock:
                    self._live.discard(cancel)
        backend, self._backend = self._backend, None
        if backend is not None:
            backend.close()
