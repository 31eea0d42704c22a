"""Plain data types shared by the engine and its callers (the UI may import these)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Literal

Role = Literal["system", "user", "assistant"]
KvCacheType = Literal["f16", "q8_0"]


@dataclass(frozen=True, slots=True)
class TextPart:
    """Text in a message."""

    text: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ImagePart:
    """An image the person attached (issue 13), content-addressed by ``sha256`` (hex of
    the original file's bytes). ``data`` is the original file; it is b"" where only
    the description is needed (a stored message's list, the chat view before it asks
    for the thumbnail): ``ChatStore.with_data`` fills it. Equal parts have equal
    hashes, whatever ``data`` holds."""

    sha256: str
    name: str = ""  # the file name it had ("" for pasted image data)
    mime: str = "image/png"
    size: int = 0  # bytes of the original
    width: int = 0  # pixels of the original; 0 where unknown
    height: int = 0
    data: bytes = field(default=b"", repr=False, compare=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class DocumentPart:
    """A document the person attached (issue 14: PDF, DOCX, text), content-addressed
    like ``ImagePart``. ``text`` is what the model reads of it (extracted when it
    was attached, stored with it); ``data`` the original file, b"" unless asked."""

    sha256: str
    name: str = ""
    mime: str = "application/octet-stream"
    size: int = 0
    text: str = ""
    data: bytes = field(default=b"", repr=False, compare=False)


# An attachment of a message: stored apart from its text (engine.history.attachments).
AttachmentPart = ImagePart | DocumentPart


def _frozen_json(value: object) -> object:
    """A JSON-like value that nobody can change afterwards (dicts read-only, lists tuples)."""
    if isinstance(value, Mapping):
        return MappingProxyType({str(k): _frozen_json(v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return tuple(_frozen_json(v) for v in value)
    return value


def _thawed_json(value: object) -> object:
    """The plain-dict/list form of a ``_frozen_json`` value (for json.dumps, a template)."""
    if isinstance(value, Mapping):
        return {k: _thawed_json(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [_thawed_json(v) for v in value]
    return value


@dataclass(frozen=True, slots=True)
class ToolCallPart:
    """A call the model made in a reply: which tool, with which arguments.

    ``id`` pairs it with its ``ToolResultPart`` (an OpenAI server's call id, or
    one Hearth made); ``server`` is the MCP server that has the tool ("" for a
    built-in one). ``arguments`` is read-only; ``plain_arguments()`` is a dict.
    """

    id: str
    name: str
    arguments: Mapping[str, object]
    server: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "arguments", _frozen_json(dict(self.arguments)))

    def plain_arguments(self) -> dict[str, object]:
        out = _thawed_json(self.arguments)
        assert isinstance(out, dict)
        return out

    def arguments_json(self) -> str:
        return json.dumps(self.plain_arguments(), ensure_ascii=False, sort_keys=True)

    def __hash__(self) -> int:
        # (The generated hash would fail on the mapping; messages are hashed as keys.)
        return hash((self.id, self.name, self.arguments_json(), self.server))


@dataclass(frozen=True, slots=True)
class ToolResultPart:
    """What a tool answered to the call ``call_id``: text the model reads next.

    ``ok`` False: the tool failed, was refused or was stopped, and ``content`` is
    the sentence the model (and the person) reads instead of a result.
    """

    call_id: str
    name: str
    content: str
    ok: bool = True
    duration_ms: int = 0
    server: str = ""


# What a message's content is made of: text, attachments, and (a reply that called
# tools) its calls and their results in order between the text before and after them.
Part = TextPart | ImagePart | DocumentPart | ToolCallPart | ToolResultPart


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """A tool the model may call: its name, what it does, its JSON-schema parameters."""

    name: str
    description: str
    parameters: Mapping[str, object]
    server: str = ""  # the MCP server that has it; "" for a built-in tool

    def __post_init__(self) -> None:
        object.__setattr__(self, "parameters", _frozen_json(dict(self.parameters)))

    def for_template(self) -> dict[str, object]:
        """The OpenAI/Hugging Face form chat templates and servers read."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": _thawed_json(self.parameters),
            },
        }

    def __hash__(self) -> int:
        return hash((self.name, self.description, self.server))


@dataclass(frozen=True, slots=True, init=False)
class Message:
    """One message of a conversation as the model reads it: a role and its parts.

    ``Message("user", "Hi")`` is a one-part text message; ``content`` is the text
    of all its text parts. ``thinking`` is an assistant message's thinking, kept
    apart; the template gets it as ``reasoning_content`` and decides what of it
    the prompt keeps.
    """

    role: Role
    parts: tuple[Part, ...]
    thinking: str

    def __init__(self, role: Role, content: str | Sequence[Part], thinking: str = "") -> None:
        parts = (TextPart(content),) if isinstance(content, str) else tuple(content)
        object.__setattr__(self, "role", role)
        object.__setattr__(self, "parts", parts)
        object.__setattr__(self, "thinking", thinking)

    @property
    def content(self) -> str:
        return "".join(p.text for p in self.parts if isinstance(p, TextPart))

    @property
    def tool_calls(self) -> tuple[ToolCallPart, ...]:
        return tuple(p for p in self.parts if isinstance(p, ToolCallPart))

    @property
    def tool_results(self) -> tuple[ToolResultPart, ...]:
        return tuple(p for p in self.parts if isinstance(p, ToolResultPart))

    @property
    def images(self) -> tuple[ImagePart, ...]:
        return tuple(p for p in self.parts if isinstance(p, ImagePart))

    @property
    def documents(self) -> tuple[DocumentPart, ...]:
        return tuple(p for p in self.parts if isinstance(p, DocumentPart))


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
    # Layers on the GPU: 0 the CPU only, -1 all, None "Automatic" (what fits the GPU
    # found, planned by app.backends.open_local; the loader takes an unplanned None as 0).
    n_gpu_layers: int | None = 0
    # Each offloaded attention layer keeps its KV cache on the GPU (llama.cpp's
    # offload_kqv); the planner turns it off when that keeps more layers there.
    offload_kqv: bool = True
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
    # Image tokens an attached image is scaled down to at most (issue 13): a 9B model
    # on a laptop CPU reads ~13 tokens/s of prompt, so 384 is about half a minute.
    image_max_tokens: int = 384
    # Model files (names) loaded without their vision projector: they cannot see, and
    # the projector's memory (~0.9 GB for Qwen3.5 9B) stays free.
    no_vision: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.kv_cache_type not in ("f16", "q8_0"):
            raise ValueError(f"kv_cache_type must be f16 or q8_0, not {self.kv_cache_type!r}")
        if self.kv_cache_type != "f16" and not self.flash_attn:
            raise ValueError("a quantized KV cache (q8_0) needs flash_attn=True")
        if not 16 <= self.image_max_tokens <= 4096:
            raise ValueError(f"image_max_tokens must be 16..4096, not {self.image_max_tokens}")
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
        if self.n_gpu_layers is not None and self.n_gpu_layers < -1:
            raise ValueError("n_gpu_layers must be -1 (all) or a count")


@dataclass(frozen=True, slots=True, kw_only=True)
class GpuDevice:
    """One accelerator llama.cpp can use, as it reports it (``ggml_backend_dev_*``)."""

    backend: str  # its registry's name: "CUDA", "Metal", "Vulkan", "ROCm", ...
    name: str  # llama.cpp's device name: "CUDA0", "MTL0"
    description: str  # "NVIDIA GeForce RTX 4060 Laptop GPU", "Apple M2"
    total_memory: int  # bytes; Metal: its recommended working-set size
    free_memory: int  # bytes free when asked
    integrated: bool = False  # shares the RAM (Apple Silicon, an integrated GPU)


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceProbe:
    """What this process's llama.cpp can compute on (engine.inference.devices)."""

    gpus: tuple[GpuDevice, ...] = ()
    can_offload: bool = False  # llama_supports_gpu_offload(): a GPU backend has a device
    cpu: str = ""  # the best vector extension the CPU backend uses: "AVX2", "NEON"
    # A sentence when a GPU backend is there but unusable (no driver, a module that
    # would not load); "" otherwise.
    note: str = ""

    @property
    def gpu(self) -> GpuDevice | None:
        """The device a plan is made for: the one with the most free memory."""
        return max(self.gpus, key=lambda g: g.free_memory, default=None)


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


@dataclass(frozen=True, slots=True, kw_only=True)
class Turn:
    """One reply's input, for any backend: the messages it reads and how to answer.

    Built from the chat store by ``engine.history.turns`` (the same for the window
    and the CLI). ``sampling`` set: exactly these; otherwise the backend's defaults
    for the model with ``overrides`` (what the person set) on top.
    """

    messages: tuple[Message, ...]
    thinking: bool | None = None  # None: the model's default
    sampling: SamplingParams | None = None
    overrides: Mapping[str, float | int] = field(default_factory=lambda: MappingProxyType({}))
    # The last message is a cut-off reply: carry on writing it.
    continue_reply: bool = False
    # Names the conversation, so that switching chats and back keeps its evaluated state.
    cache_key: int | None = None
    # The tools the model may call in this reply (rendered by its template, or sent
    # as a server's ``tools``); none: the model is not told about tools.
    tools: tuple[ToolSpec, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "tools", tuple(self.tools))
        # A turn crosses to the engine thread: nothing the sender still holds (a
        # list, a dict) may change under it there.
        object.__setattr__(self, "messages", tuple(self.messages))
        object.__setattr__(self, "overrides", MappingProxyType(dict(self.overrides)))


class ThinkingMode(StrEnum):
    """Whether new chats think: as the model's makers default it, always, never.

    # NOTE: stored on disk (settings.json, ``generation.thinking``); keep values stable.
    """

    MODEL = "model"
    ON = "on"
    OFF = "off"

    @classmethod
    def of(cls, value: object) -> ThinkingMode:
        """The mode a settings value names; an unknown one (a newer Hearth's, a
        hand-edited file) is the model's default."""
        try:
            return cls(str(value))
        except ValueError:
            return cls.MODEL


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


@dataclass(frozen=True, slots=True)
class PromptProgress:
    """The model is reading something slow before it answers (issue 13: its vision
    encoder on ``done`` of ``total`` new images); sent before each one."""

    done: int
    total: int
    what: Literal["image"] = "image"


@dataclass(frozen=True, slots=True)
class ToolCallEvent:
    """The model called a tool (its markup never reaches the answer's text)."""

    call: ToolCallPart


@dataclass(frozen=True, slots=True)
class ToolResultEvent:
    """A tool answered (or was refused, failed, stopped); the model reads it next."""

    result: ToolResultPart


Event = TextDelta | ThinkingDelta | ToolCallEvent | ToolResultEvent | ReplyDone | PromptProgress


# From this fraction on, a meter should warn that the next turns may not fit.
WARN_FRACTION = 0.8
# A reply is reserved its whole budget, but at most this share of the window: a
# thinking budget can be most of a window, and replies rarely use all of theirs.
RESERVE_FRACTION = 0.25


@dataclass(frozen=True, slots=True)
class ContextUsage:
    """The prompt's tokens plus the reply's budget against the window (n_ctx)."""

    prompt_tokens: int
    reply_budget: int  # answer + thinking budget: what the next reply may use at most
    n_ctx: int

    @property
    def needed(self) -> int:
        return self.prompt_tokens + self.reply_budget

    @property
    def fraction(self) -> float:
        """Of the window the prompt uses now (0..1, more when it does not fit)."""
        return self.prompt_tokens / self.n_ctx if self.n_ctx else 1.0

    @property
    def fits(self) -> bool:
        """True when the prompt and a full-length reply both fit."""
        return self.needed <= self.n_ctx

    @property
    def prompt_fits(self) -> bool:
        """True when the prompt fits with room for at least one reply token."""
        return self.prompt_tokens < self.n_ctx

    @property
    def reserve(self) -> int:
        """The room the next reply is given: its budget, at most a quarter of the window."""
        return min(self.reply_budget, int(self.n_ctx * RESERVE_FRACTION))

    @property
    def has_room(self) -> bool:
        """True when the prompt leaves the next reply its reserve. When it does not,
        the person chooses: drop the oldest turns or start a new chat."""
        return self.prompt_tokens + self.reserve <= self.n_ctx

    @property
    def warn(self) -> bool:
        return not self.has_room or self.fraction >= WARN_FRACTION


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
    vision: bool = False  # a vision projector is loaded with it: it can see images
    extra: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    def __post_init__(self) -> None:
        # Sent across threads (model_loaded): read-only, whoever built it.
        object.__setattr__(self, "extra", MappingProxyType(dict(self.extra)))
