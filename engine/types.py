"""Plain data types shared by the engine and its callers (the UI may import these)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

Role = Literal["system", "user", "assistant"]
KvCacheType = Literal["f16", "q8_0"]


@dataclass(frozen=True, slots=True)
class Message:
    """One turn of a conversation as the model sees it."""

    role: Role
    content: str
    # An assistant turn's thinking, stored apart. Passed to the template as
    # ``reasoning_content``; the template decides what of it the prompt keeps.
    thinking: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class EngineOptions:
    """How a model is loaded. Defaults suit a laptop CPU, not llama-cpp-python's.

    ``n_threads=None`` means "the number of physical performance cores". ``n_ctx``
    is clamped to the model's training context when loading.
    """

    n_ctx: int = 8192
    n_threads: int | None = None
    n_batch: int = 512
    n_ubatch: int = 512
    n_gpu_layers: int = 0
    # Off: on CPU llama.cpp repacks most quantized weights (Q4_0, Q4_K, IQ4_NL) into a
    # buffer of its own, and with mmap the file's pages stay resident too: Qwen3.5-9B
    # Q4 took ~9 GB instead of ~5.5 GB (bench/RESULTS.md, "mmap").
    use_mmap: bool = False
    flash_attn: bool = False
    seed: int = 0
    # KV cache element type for K and V; a quantized V cache needs flash attention.
    kv_cache_type: KvCacheType = "f16"
    # Memory for recurrent-state checkpoints of hybrid models (Qwen3.5), which let
    # the next turn, Regenerate and editing the last message skip re-reading the chat.
    checkpoint_mib: int = 256

    def __post_init__(self) -> None:
        if self.kv_cache_type not in ("f16", "q8_0"):
            raise ValueError(f"kv_cache_type must be f16 or q8_0, not {self.kv_cache_type!r}")
        if self.kv_cache_type != "f16" and not self.flash_attn:
            raise ValueError("a quantized KV cache (q8_0) needs flash_attn=True")
        if self.checkpoint_mib < 0:
            raise ValueError("checkpoint_mib cannot be negative")
        if not 256 <= self.n_ctx <= 1_048_576:
            raise ValueError(f"n_ctx must be between 256 and 1048576, not {self.n_ctx}")
        if self.n_threads is not None and self.n_threads < 1:
            raise ValueError(f"n_threads must be at least 1, not {self.n_threads}")
        if self.n_batch < 1 or self.n_ubatch < 1:
            raise ValueError("n_batch and n_ubatch must be at least 1")
        if self.n_ubatch > self.n_batch:
            raise ValueError("n_ubatch cannot be larger than n_batch")
        if self.n_gpu_layers < -1:
            raise ValueError("n_gpu_layers must be -1 (all) or a count")


@dataclass(frozen=True, slots=True, kw_only=True)
class SamplingParams:
    """Every sampler field set explicitly: llama-cpp-python's defaults differ per call."""

    max_tokens: int = 1024  # of the answer; thinking has its own budget
    # Thinking beyond this many tokens is closed (``</think>`` is inserted) and the
    # model goes on with the answer, so thinking cannot starve it.
    max_thinking_tokens: int = 4096
    temperature: float = 0.7
    top_p: float = 0.8
    top_k: int = 20
    min_p: float = 0.0
    repeat_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.max_tokens < 1:
            raise ValueError("max_tokens must be at least 1")
        if self.max_thinking_tokens < 0:
            raise ValueError("max_thinking_tokens cannot be negative")
        if self.temperature < 0:
            raise ValueError("temperature cannot be negative")
        if not 0 < self.top_p <= 1:
            raise ValueError("top_p must be in (0, 1]")
        if self.top_k < 0:
            raise ValueError("top_k cannot be negative")
        if not 0 <= self.min_p <= 1:
            raise ValueError("min_p must be in [0, 1]")


class FinishReason(StrEnum):
    """Why a reply ended.

    # NOTE: stored on disk (messages.status via MessageStatus); keep values stable.
    """

    STOP = "stop"  # the model ended its turn
    LENGTH = "length"  # max_tokens reached
    CANCELLED = "cancelled"  # the person pressed Stop
    CONTEXT = "context"  # the context window is full


@dataclass(frozen=True, slots=True, kw_only=True)
class GenerationStats:
    prompt_tokens: int
    completion_tokens: int
    ttft_s: float
    tokens_per_s: float
    elapsed_s: float
    reused_tokens: int = 0  # prompt tokens already in the KV cache from the last turn
    evaluated_tokens: int = 0  # prompt tokens actually decoded for this reply
    thinking_tokens: int = 0  # of completion_tokens, how many were thinking
    thinking_s: float = 0.0  # wall time from the first thinking token to the answer
    context_tokens: int = 0  # tokens in the context window after this reply


@dataclass(frozen=True, slots=True)
class TextDelta:
    """A piece of the reply: whole UTF-8 characters only."""

    text: str


@dataclass(frozen=True, slots=True)
class ReplyDone:
    reason: FinishReason
    stats: GenerationStats


@dataclass(frozen=True, slots=True)
class ThinkingDelta:
    """A piece of the model's thinking (reasoning) text, kept apart from the answer."""

    text: str


Event = TextDelta | ThinkingDelta | ReplyDone


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelInfo:
    """What the status bar and the About box say about a loaded model."""

    path: str
    name: str
    architecture: str
    quantization: str
    file_size: int
    n_ctx: int
    n_ctx_train: int
    has_chat_template: bool
    template_source: str  # "gguf" or "fallback:<name>"
    supports_thinking: bool = False  # the template has an enable_thinking switch
    thinking_default: bool = False  # what the model's makers default it to
    extra: dict[str, str] = field(default_factory=dict)


class MessageStatus(StrEnum):
    """How a stored message ended.

    # NOTE: stored on disk (messages.status); keep values stable.
    """

    COMPLETE = "complete"
    STREAMING = "streaming"  # being written right now
    STOPPED = "stopped"  # the person pressed Stop
    LENGTH = "length"  # cut off by the reply length limit
    CONTEXT = "context"  # cut off: the conversation filled the model's context window
    FAILED = "failed"  # generation failed; the partial text is kept
    INTERRUPTED = "interrupted"  # the app ended while the reply streamed


@dataclass(frozen=True, slots=True)
class Conversation:
    id: int
    title: str
    created_at: float
    updated_at: float
    pinned: bool = False  # listed before the others
    title_is_auto: bool = False  # made by Hearth, not the person: an auto title may replace it
    deleted_at: float | None = None  # set while a deleted conversation can still be undone


@dataclass(frozen=True, slots=True)
class StoredMessage:
    id: int
    conversation_id: int
    role: Role
    content: str  # the answer only
    status: MessageStatus
    created_at: float
    thinking: str = ""  # the model's thinking, kept apart from the answer
    thinking_ms: int = 0  # how long it thought ("Thought for 12 s")
    parent_id: int | None = None  # the message before it (None: the first one)
    # Versions of this turn (regenerated replies, edited messages) share a parent:
    # this is version variant_index + 1 of variant_count, oldest first.
    variant_index: int = 0
    variant_count: int = 1
    active: bool = True  # the version shown (on the active path if its parent is)


# Search snippets mark the matched words with these two control characters, which
# no markup language uses, so a UI can escape the text and then add its highlight.
HIGHLIGHT_START = "\x02"
HIGHLIGHT_END = "\x03"


@dataclass(frozen=True, slots=True)
class SearchHit:
    conversation_id: int
    message_id: int
    title: str  # of the conversation
    snippet: str  # a few words around the match, matches between HIGHLIGHT_START/END
    rank: float  # bm25 (lower is better) for a ranked search; 0.0 when newest first
    role: Role = "assistant"
    created_at: float = 0.0

    def parts(self) -> list[tuple[str, bool]]:
        """The snippet as (text, is_match) pieces, for a UI to escape and highlight."""
        pieces: list[tuple[str, bool]] = []
        for i, chunk in enumerate(self.snippet.split(HIGHLIGHT_START)):
            match, sep, rest = chunk.partition(HIGHLIGHT_END)
            if i == 0 or not sep:  # text before the first match, or a stray marker
                pieces.append((chunk.replace(HIGHLIGHT_END, ""), False))
                continue
            pieces.append((match, True))
            if rest:
                pieces.append((rest.replace(HIGHLIGHT_END, ""), False))
        return [(text, hit) for text, hit in pieces if text]


class DownloadState(StrEnum):
    """Where a model download is (engine.download.Download reports it)."""

    CONNECTING = "connecting"  # asking the Hub for the file's size, hash and location
    CHECKING = "checking"  # re-reading the part downloaded earlier before resuming
    DOWNLOADING = "downloading"
    RETRYING = "retrying"  # a transient failure; waiting, then resuming where it stopped
    VERIFYING = "verifying"  # checking the sha256 before the file counts as installed
    DONE = "done"


@dataclass(frozen=True, slots=True, kw_only=True)
class DownloadProgress:
    """One throttled progress report of a download (bytes; speed in bytes per second)."""

    entry_id: str
    state: DownloadState
    done: int
    total: int | None
    speed: float = 0.0  # smoothed; 0 until measured
    eta_s: float | None = None
    attempt: int = 1
    note: str = ""  # why it is retrying, in a sentence
