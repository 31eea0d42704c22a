"""What is in the context window, and how to get back to an earlier point of it.

``EvaluatedHistory`` mirrors the tokens llama.cpp has evaluated (positions
0..n_past-1, the reply's sampled tokens included) so that the next prompt reuses
their longest common prefix and only the rest is evaluated.

For an attention-only model that is plain KV-cache truncation. A hybrid or
recurrent model (Qwen3.5: three Gated DeltaNet layers per attention layer) keeps
one recurrent state per sequence that cannot be rolled back: truncating to an
earlier position is impossible. So at turn boundaries we save a *checkpoint* of
the recurrent part only (``llama_state_seq_get_data_ext`` with
``LLAMA_STATE_SEQ_FLAGS_PARTIAL_ONLY``, as llama.cpp's server does) and, to go
back, restore the newest checkpoint at or before the shared prefix and truncate
the attention cache behind it. Checkpoints are matched by the exact tokens they
follow, so a stale one can never be applied; they live in an LRU bounded in
bytes (``EngineOptions.checkpoint_mib``).

Switching conversations (A, then B, then back to A) replaces the whole context,
attention cache included, so a recurrent checkpoint of A alone is not enough to
come back. When the caller names its conversations (``EvaluatedHistory.select``),
leaving A keeps a *snapshot* of its full sequence state (attention cache and, on
a hybrid model, the recurrent state, rolled back first to A's last turn
boundary) in the same byte-bounded LRU; coming back restores it and reads only
A's new tokens. A KV-only model gets the snapshots without the checkpoints.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import threading
from array import array
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import llama_cpp

from engine.errors import GenerationError
from engine.inference.loader import log_state, recent_problems
from engine.types import Message

__all__ = [
    "Checkpoint",
    "CheckpointStore",
    "EvaluatedHistory",
    "Media",
    "checkpoint_marks",
    "common_prefix",
]

_log = logging.getLogger(__name__)

_PARTIAL = llama_cpp.LLAMA_STATE_SEQ_FLAGS_PARTIAL_ONLY
_NULL_ABORT = llama_cpp.ggml_abort_callback(0)
_BLOCK = 256  # tokens compared per slice in common_prefix
_SENTINEL = "\x07"  # stand-in text for probing where a template's rendering will differ


def common_prefix(a: array[int], b: array[int], limit: int) -> int:
    """Length of the common prefix of ``a`` and ``b``, at most ``limit``.

    Compares slices in C and walks only the block that differs: a 100k-token
    history costs well under a millisecond.
    """
    limit = min(limit, len(a), len(b))
    i = 0
    while i < limit:
        j = min(i + _BLOCK, limit)
        if a[i:j] != b[i:j]:
            while a[i] == b[i]:
                i += 1
            return i
        i = j
    return limit


def checkpoint_marks(
    conversation: Sequence[Message],
    tokens: Sequence[int],
    prompt_tokens: Callable[[Sequence[Message]], list[int]],
) -> list[int]:
    """Where later prompts will part from ``tokens`` (this conversation's prompt).

    Rendered, not guessed: the template may re-render this turn differently next
    time (Qwen3.5 drops the thinking of earlier replies), so the next turn's prompt
    diverges where a probe with a stand-in reply and question does; an edit of the
    last message diverges where a stand-in for it does. Regenerate reuses the
    first mark too, a few tokens before the end. ``prompt_tokens`` renders and
    tokenizes a conversation (raising ``GenerationError`` if the template refuses).
    """
    probes = [[*conversation, Message("assistant", _SENTINEL), Message("user", _SENTINEL)]]
    if conversation and conversation[-1].role == "user":
        probes.append([*conversation[:-1], Message("user", _SENTINEL)])
    prompt = array("i", tokens)
    marks: list[int] = []
    for probe in probes:
        try:
            other = array("i", prompt_tokens(probe))
        except GenerationError:  # the template rejects the probe: no mark there
            continue
        mark = common_prefix(prompt, other, len(tokens) - 1)
        if mark > 0:
            marks.append(mark)
    return marks


@dataclass(frozen=True, slots=True)
class Media:
    """Positions of a prompt that the token loop does not decode itself: an image
    (``engine.inference.vision``), whose stand-in ids fill them in ``tokens``.
    ``decode(pos, stop)``: None if stopped before anything was decoded, else
    llama_decode's result."""

    n_pos: int
    decode: Callable[[int, threading.Event], int | None]


@dataclass(slots=True, eq=False)
class Checkpoint:
    """The recurrent state after evaluating exactly ``tokens``."""

    tokens: array[int]
    data: Any  # ctypes uint8 array: llama.cpp's serialized partial state
    full: bool = False  # the whole sequence state (a conversation's snapshot), not partial

    @property
    def n_tokens(self) -> int:
        return len(self.tokens)

    @property
    def nbytes(self) -> int:
        return len(self.data) + self.tokens.itemsize * len(self.tokens)


class CheckpointStore:
    """Recurrent-state checkpoints of sequence 0, least recently used dropped first.

    Besides the turn-boundary checkpoints there is one *scratch* checkpoint,
    overwritten between the batches of a long prompt: a Stop (or a failure)
    in the middle of reading a long document then loses one batch, not all of it.
    """

    def __init__(self, ctx: Any, budget_bytes: int) -> None:
        self._ctx = ctx
        self.budget_bytes = budget_bytes
        self._items: OrderedDict[bytes, Checkpoint] = OrderedDict()
        self._scratch: Checkpoint | None = None
        self._lru_bytes = 0
        self.saves = 0
        self.restores = 0

    @property
    def bytes_used(self) -> int:
        return self._lru_bytes + (self._scratch.nbytes if self._scratch is not None else 0)

    def __len__(self) -> int:
        return len(self._items)

    def positions(self) -> list[int]:
        """Token counts of the partial checkpoints, ascending."""
        return sorted(c.n_tokens for c in self._items.values() if not c.full)

    @property
    def snapshots(self) -> int:
        """How many conversations' full states are kept."""
        return sum(1 for c in self._items.values() if c.full)

    def has(self, tokens: array[int]) -> bool:
        return _key(tokens) in self._items

    def save(self, tokens: array[int]) -> Checkpoint | None:
        """Checkpoint the current state, which must follow exactly ``tokens``."""
        data = self._read_state(len(tokens), None)
        if data is None:
            return None
        return self._keep(_key(tokens), Checkpoint(array("i", tokens), data))

    def save_snapshot(self, name: object, tokens: array[int]) -> Checkpoint | None:
        """Keep the full state of sequence 0 (after exactly ``tokens``) as
        conversation ``name``'s, replacing any earlier one of it."""
        data = self._read_state(len(tokens), None, flags=0)
        if data is None:
            self._drop(_snapshot_key(name))  # an older one would be stale
            return None
        return self._keep(_snapshot_key(name), Checkpoint(array("i", tokens), data, full=True))

    def take_snapshot(self, name: object) -> Checkpoint | None:
        """Conversation ``name``'s snapshot, removed from the store (None if none)."""
        return self._drop(_snapshot_key(name))

    def restore_snapshot(self, snapshot: Checkpoint) -> bool:
        """Load a full snapshot into sequence 0 (llama.cpp clears the sequence first)."""
        data = snapshot.data
        ok = int(llama_cpp.llama_state_seq_set_data_ext(self._ctx, data, len(data), 0, 0))
        if ok:
            self.restores += 1
        return ok > 0

    def _drop(self, key: bytes) -> Checkpoint | None:
        old = self._items.pop(key, None)
        if old is not None:
            self._lru_bytes -= old.nbytes
        return old

    def _keep(self, key: bytes, checkpoint: Checkpoint) -> Checkpoint | None:
        self._drop(key)
        self._items[key] = checkpoint
        self._lru_bytes += checkpoint.nbytes
        self.saves += 1
        while self.bytes_used > self.budget_bytes and self._items:
            _, evicted = self._items.popitem(last=False)
            self._lru_bytes -= evicted.nbytes
        return checkpoint if self._items.get(key) is checkpoint else None

    def save_scratch(self, tokens: array[int]) -> None:
        """Overwrite the scratch checkpoint with the current state (after ``tokens``)."""
        old = self._scratch
        self._scratch = None
        data = self._read_state(len(tokens), old.data if old is not None else None)
        if data is not None:
            self._scratch = Checkpoint(array("i", tokens), data)

    def _read_state(self, n_tokens: int, reuse: Any, *, flags: int = _PARTIAL) -> Any:
        size = int(llama_cpp.llama_state_seq_get_size_ext(self._ctx, 0, flags))
        if size <= 0 or size + 4 * n_tokens > self.budget_bytes:
            return None
        data = reuse if reuse is not None and len(reuse) == size else (ctypes.c_uint8 * size)()
        written = int(llama_cpp.llama_state_seq_get_data_ext(self._ctx, data, size, 0, flags))
        if written != size:
            _log.warning("state checkpoint: wrote %d of %d bytes; not kept", written, size)
            return None
        return data

    def best(self, tokens: array[int], limit: int) -> Checkpoint | None:
        """The newest-reaching checkpoint whose tokens are ``tokens[:n]`` with n <= limit."""
        found: Checkpoint | None = None
        candidates = list(self._items.values())
        if self._scratch is not None:
            candidates.append(self._scratch)
        for checkpoint in candidates:
            n = checkpoint.n_tokens
            if (
                not checkpoint.full
                and n <= limit
                and (found is None or n > found.n_tokens)
                and (tokens[:n] == checkpoint.tokens)
            ):
                found = checkpoint
        return found

    def restore(self, checkpoint: Checkpoint) -> bool:
        """Load ``checkpoint`` into sequence 0 (the recurrent part only)."""
        data = checkpoint.data
        ok = int(llama_cpp.llama_state_seq_set_data_ext(self._ctx, data, len(data), 0, _PARTIAL))
        if ok:
            self.restores += 1
            key = _key(checkpoint.tokens)
            if key in self._items:
                self._items.move_to_end(key)
        return ok > 0

    def clear(self) -> None:
        self._items.clear()
        self._scratch = None
        self._lru_bytes = 0


def _key(tokens: array[int]) -> bytes:
    return hashlib.blake2b(tokens.tobytes(), digest_size=16).digest()


def _snapshot_key(name: object) -> bytes:
    # Not a token hash (those are 16 bytes): the two kinds of key never collide.
    return b"conversation:" + repr(name).encode()


class EvaluatedHistory:
    """The tokens in sequence 0 of a llama.cpp context and the rules for reusing them.

    ``tokens[:n_past]`` is exactly what the model has evaluated. The owner's token
    loop appends one token at a time through ``tokens`` and ``n_past`` directly.
    """

    def __init__(
        self,
        *,
        ctx: Any,
        batch: Any,
        n_batch: int,
        n_ctx: int,
        n_swa: int,
        recurrent: bool,
        checkpoint_bytes: int,
    ) -> None:
        self._ctx = ctx
        self._memory = llama_cpp.llama_get_memory(ctx)
        self._batch = batch  # a llama-cpp-python LlamaBatch of n_batch tokens
        self._n_batch = n_batch
        self._n_ctx = n_ctx
        self._n_swa = n_swa
        self.recurrent = recurrent  # its memory cannot drop a suffix: checkpoints instead
        self.tokens = array("i", bytes(4 * n_ctx))
        self.n_past = 0
        self.checkpoints: CheckpointStore | None = (
            CheckpointStore(ctx, checkpoint_bytes) if recurrent and checkpoint_bytes > 0 else None
        )
        # Conversations' snapshots: in the checkpoints' LRU on a hybrid model; a KV
        # model, which needs no checkpoints, gets a store of the same budget for them.
        self.snapshots: CheckpointStore | None = self.checkpoints
        if self.snapshots is None and checkpoint_bytes > 0:  # (an empty store is falsy)
            self.snapshots = CheckpointStore(ctx, checkpoint_bytes)
        self._abort_cb: Any = None
        self._conversation: object = None  # the caller's name for what is in the context

    # -- conversations -----------------------------------------------------------

    def select(self, name: object, prompt: array[int]) -> None:
        """The next prompt, ``prompt``, belongs to conversation ``name`` (None: unnamed).

        Leaving a named conversation keeps a snapshot of it, taken at its newest
        checkpoint (where its next turn will part from what is evaluated now);
        coming back to one restores its snapshot if that shares more with
        ``prompt`` than what is in the context. A snapshot holds the attention
        cache of every token it covers: one larger than the checkpoint budget is
        not kept, and that conversation is read again when it comes back.
        """
        store = self.snapshots
        previous, self._conversation = self._conversation, name
        if store is None or name == previous:
            return
        if previous is not None and self.n_past > 0:
            self._park(store, previous)
        if name is None:
            return
        snapshot = store.take_snapshot(name)
        if snapshot is None:
            return
        here = common_prefix(self.tokens, prompt, min(self.n_past, len(prompt) - 1))
        there = common_prefix(snapshot.tokens, prompt, len(prompt) - 1)
        if there <= here:
            return
        if store.restore_snapshot(snapshot):
            n = snapshot.n_tokens
            self.tokens[:n] = snapshot.tokens
            self.n_past = n
            _log.debug("conversation %r: restored its state at %d tokens", name, n)
        else:  # the sequence may be half-written: start from nothing
            _log.warning("could not restore the state of conversation %r", name)
            llama_cpp.llama_memory_clear(self._memory, True)
            self.n_past = 0

    def _park(self, store: CheckpointStore, name: object) -> None:
        """Snapshot conversation ``name`` before another one replaces it."""
        checkpoint = store.best(self.tokens, self.n_past) if self.recurrent else None
        if checkpoint is not None and checkpoint.n_tokens < self.n_past:
            # Its next turn starts over from its last turn boundary anyway (the
            # template re-renders the last reply): a smaller snapshot, ready to use.
            self.n_past = self._rollback(self.tokens, checkpoint.n_tokens)
        if self.n_past > 0:
            store.save_snapshot(name, self.tokens[: self.n_past])

    # -- reuse -------------------------------------------------------------------

    def reuse(self, prompt: array[int]) -> int:
        """Keep the longest usable prefix shared with ``prompt``; return its length.

        At least one prompt token is always left to evaluate: sampling needs the
        logits of the last prompt token, and only a decode produces them.
        """
        keep = common_prefix(self.tokens, prompt, min(self.n_past, len(prompt) - 1))
        while 0 < keep < len(prompt) and prompt[keep] < 0 and prompt[keep - 1] < 0:
            keep -= 1  # never half an image: its stand-in ids are negative
        if self.recurrent:
            if keep < self.n_past:
                keep = self._rollback(prompt, keep)
            self.n_past = keep
            return keep
        mem = self._memory
        if keep > 0 and self._n_swa > 0:
            # Without a full-size SWA cache, positions older than the window are
            # gone; truncating behind them would leave holes (llama.cpp server
            # does the same check).
            pos_min = int(llama_cpp.llama_memory_seq_pos_min(mem, 0))
            if pos_min > max(0, keep - self._n_swa):
                keep = 0
        if keep == 0:
            if self.n_past:
                llama_cpp.llama_memory_clear(mem, True)
        elif keep < self.n_past and not llama_cpp.llama_memory_seq_rm(mem, 0, keep, -1):
            llama_cpp.llama_memory_clear(mem, True)
            keep = 0
        self.n_past = keep
        return keep

    def _rollback(self, prompt: array[int], limit: int) -> int:
        """Go back to the newest checkpoint of ``prompt[:n]``, n <= limit; 0 if none."""
        store = self.checkpoints
        checkpoint = store.best(prompt, limit) if store is not None else None
        if checkpoint is not None and store is not None and store.restore(checkpoint):
            n = checkpoint.n_tokens
            # The attention layers' cache is truncatable; the recurrent part now
            # ends at n - 1, so it accepts the removal too.
            if llama_cpp.llama_memory_seq_rm(self._memory, 0, n, -1):
                self.tokens[:n] = checkpoint.tokens
                return n
            _log.warning("could not truncate the cache after restoring a checkpoint at %d", n)
        llama_cpp.llama_memory_clear(self._memory, True)
        return 0

    # -- evaluation --------------------------------------------------------------

    def evaluate(
        self,
        prompt: Sequence[int],
        start: int,
        stop: threading.Event,
        *,
        checkpoint_at: Sequence[int] = (),
        on_progress: Callable[[int, int], None] | None = None,
        media: Mapping[int, Media] | None = None,
    ) -> bool:
        """Decode ``prompt[start:]`` in chunks of n_batch; False if stopped.

        With checkpoints, chunks also end at each position of ``checkpoint_at``
        and the state there is saved (unless a checkpoint of it already exists).
        ``on_progress(done, total)`` follows each chunk (tokens of ``prompt[start:]``).
        ``media``: by start position, runs decoded by their own ``decode`` (images).
        """
        media = {p: m for p, m in (media or {}).items() if p >= start}
        inside = {p for at, m in media.items() for p in range(at + 1, at + m.n_pos)}
        marks = sorted({p for p in checkpoint_at if start <= p < len(prompt)} - inside)
        starts = sorted(media)
        if self.checkpoints is None:
            marks = []
        self.set_abort(stop)  # a chunk can take seconds on a big model
        try:
            i = start
            while True:
                if marks and marks[0] == i:
                    marks.pop(0)
                    self._checkpoint(i)
                elif i > start and i < len(prompt) and self.checkpoints is not None:
                    # Between batches of a long prompt: a Stop in the next one
                    # then loses one batch, not the whole prompt.
                    self.checkpoints.save_scratch(self.tokens[:i])
                if i >= len(prompt):
                    return True
                if stop.is_set():
                    return False
                if i in media:
                    starts.pop(0)
                    if not self._decode_media(media[i], prompt, i, stop):
                        return False
                    i = self.n_past
                else:
                    end = min(
                        i + self._n_batch,
                        len(prompt),
                        marks[0] if marks else len(prompt),
                        starts[0] if starts else len(prompt),
                    )
                    if not self._decode(list(prompt[i:end]), i, stop):
                        return False
                    i = end
                if on_progress is not None:
                    on_progress(i - start, len(prompt) - start)
        finally:
            self.set_abort(None)

    def extend(self, new_tokens: Sequence[int], stop: threading.Event) -> bool:
        """Decode tokens the engine inserts into the reply (e.g. ``</think>``)."""
        n = self.n_past
        return self.evaluate([*self.tokens[:n], *new_tokens], n, stop)

    def checkpoint_here(self) -> None:
        """Save the state at ``n_past`` (a turn boundary the caller knows of)."""
        self._checkpoint(self.n_past)

    def _checkpoint(self, n: int) -> None:
        store = self.checkpoints
        if store is None or n == 0 or n != self.n_past:
            return
        prefix = self.tokens[:n]
        if not store.has(prefix):
            store.save(prefix)

    def _decode_media(
        self, media: Media, prompt: Sequence[int], pos: int, stop: threading.Event
    ) -> bool:
        n = media.n_pos
        self.tokens[pos : pos + n] = array("i", prompt[pos : pos + n])
        rc = media.decode(pos, stop)
        if rc is None:  # stopped before the image reached the context: nothing changed
            return False
        if rc != 0:
            return not self.decode_failed(rc, pos, n, stop)
        self.n_past = pos + n
        return True

    def _decode(self, chunk: list[int], pos: int, stop: threading.Event) -> bool:
        self.tokens[pos : pos + len(chunk)] = array("i", chunk)
        self._batch.set_batch(chunk, pos, False)
        rc = llama_cpp.llama_decode(self._ctx, self._batch.batch)
        if rc != 0:
            return not self.decode_failed(rc, pos, len(chunk), stop)
        self.n_past = pos + len(chunk)
        return True

    def decode_failed(self, rc: int, pos: int, n: int, stop: threading.Event) -> bool:
        """Handle a non-zero ``llama_decode`` of ``n`` tokens at ``pos``: True means
        stopped (the history is consistent again), otherwise raise."""
        if self.recurrent:
            # An aborted graph may have updated some layers' recurrent state and
            # not others: go back to a known state.
            self.n_past = self._rollback(self.tokens, pos)
        else:
            # llama.cpp keeps the ubatches it finished; ask it how far it got.
            pos_max = int(llama_cpp.llama_memory_seq_pos_max(self._memory, 0))
            self.n_past = max(0, min(pos + n, pos_max + 1))
        if rc == 2 and stop.is_set():
            return True
        wanted = pos + n
        if rc == 1:
            raise GenerationError(
                "The model ran out of room in its context window. The text so far is kept; "
                "start a new chat or load the model with a larger context.",
                detail=f"llama_decode returned 1 (no KV slot) at position {wanted}",
            )
        raise GenerationError(
            "llama.cpp failed while writing the reply. The text so far is kept; "
            "try again, or reload the model if it keeps happening.",
            detail=f"llama_decode returned {rc} at position {wanted}; "
            + " | ".join(recent_problems()),
        )

    def set_abort(self, stop: threading.Event | None) -> None:
        """Let llama.cpp poll ``stop`` between graph nodes (None: stop polling)."""
        log_state.aborting = False
        if stop is None:
            llama_cpp.llama_set_abort_callback(self._ctx, _NULL_ABORT, None)
            self._abort_cb = None
            return
        is_set = stop.is_set

        def abort(_data: object) -> bool:
            if is_set():
                # llama.cpp now logs the abort as a failed decode; it is a Stop.
                log_state.aborting = True
                return True
            return False

        # Kept on self: llama.cpp holds only the C pointer.
        self._abort_cb = llama_cpp.ggml_abort_callback(abort)
        llama_cpp.llama_set_abort_callback(self._ctx, self._abort_cb, None)
