"""Hearth's settings: one declared schema, persisted as JSON.

Every option is declared once (key, type, default, bounds, description, whether
changing it needs the model reloaded), like qutebrowser's configdata.yml. The
file is read leniently: a value that is missing, of the wrong type or out of
bounds falls back to its default and is reported by key; a file that cannot be
parsed at all is kept beside the new one as a backup. Writes are atomic
(write a temp file, fsync, rename).

``None`` is a real value for the options marked ``optional``: it means "let
Hearth decide" (the model's recommended sampling, the context the memory
estimate allows, the number of physical cores).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Final, Generic, TypeVar, cast, overload

from engine.models.choice import AUTO, ModelChoice
from engine.models.memory import AUTO_CONTEXT
from engine.types import EngineOptions, KvCacheType, ThinkingMode

# 2: "GPU layers" became optional, None ("Automatic") its default (issue 12).
SETTINGS_VERSION = 2
Value = str | int | float | bool | None
T = TypeVar("T")


class Theme(StrEnum):
    """# NOTE: stored on disk (settings.json, ``appearance.theme``); keep values stable."""

    SYSTEM = "system"
    LIGHT = "light"
    DARK = "dark"


class KvCache(StrEnum):
    """# NOTE: stored on disk (settings.json, ``performance.kv_cache_type``)."""

    F16 = "f16"
    Q8_0 = "q8_0"


@dataclass(frozen=True, slots=True, kw_only=True)
class Spec(Generic[T]):
    """One option, declared once. Typed: ``settings[Performance.N_CTX]`` is ``int | None``
    and ``settings.set(Performance.N_CTX, "x")`` is a mypy error (and a ValueError)."""

    key: str
    kind: type  # str, int, float, bool, or a StrEnum (its values are the choices)
    default: T
    label: str
    description: str
    minimum: float | None = None
    maximum: float | None = None
    optional: bool = False  # None allowed: "automatic" / "model default"
    reload: bool = False  # takes effect after the model is reloaded

    @property
    def page(self) -> str:
        return self.key.split(".", 1)[0]

    @property
    def choices(self) -> tuple[str, ...]:
        """The values a choice option takes (its StrEnum's), else ()."""
        if issubclass(self.kind, StrEnum):
            return tuple(member.value for member in self.kind)
        return ()

    def check(self, value: object) -> T:
        """``value`` if it is valid for this option (a choice as its enum), else raise
        ValueError."""
        return cast(T, self._check(value))

    def _check(self, value: object) -> Value:
        if value is None:
            if self.optional:
                return None
            raise ValueError("may not be empty")
        if self.kind is bool:
            if not isinstance(value, bool):
                raise ValueError("must be true or false")
            return value
        if self.kind in (int, float):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError("must be a number")
            if self.kind is int and not float(value).is_integer():
                raise ValueError("must be a whole number")
            number: int | float = int(value) if self.kind is int else float(value)
            if self.minimum is not None and number < self.minimum:
                raise ValueError(f"must be at least {self.minimum:g}")
            if self.maximum is not None and number > self.maximum:
                raise ValueError(f"must be at most {self.maximum:g}")
            return number
        if not isinstance(value, str):
            raise ValueError("must be text")
        if issubclass(self.kind, StrEnum):
            if value not in self.choices:
                raise ValueError(f"must be one of {', '.join(self.choices)}")
            return self.kind(value)
        return value


def _s(key: str, kind: type, default: T, label: str, description: str, **kw: Any) -> Spec[T]:
    return Spec(key=key, kind=kind, default=default, label=label, description=description, **kw)


class Model:
    """Settings → Model (chosen from the page's list and the first-run offer)."""

    FAMILY: Final[Spec[str]] = _s(
        "model.family", str, "qwen3.5-9b", "Model", "The model family to chat with.", reload=True
    )
    QUANT: Final[Spec[str]] = _s(
        "model.quant",
        str,
        AUTO,
        "Quantization",
        "Which file of the family; 'auto' picks the best one that fits this computer.",
        reload=True,
    )
    OFFER_DISMISSED: Final[Spec[str]] = _s(
        "model.offer_dismissed",
        str,
        "",
        "Download offer dismissed",
        "The model family whose first-run download offer the person closed with 'Not now'.",
    )
    PATH: Final[Spec[str]] = _s(
        "model.path",
        str,
        "",
        "Model file",
        "A GGUF file chosen by hand; empty means the catalog's choice (or the starter model).",
        reload=True,
    )
    NO_VISION: Final[Spec[str]] = _s(
        "model.no_vision",
        str,
        "",
        "Models without vision",
        "Model files (names, separated by '|') loaded without their vision file: they "
        "cannot see images, and the vision file's memory stays free.",
        reload=True,
    )
    # Issue 15: a model on a server (Settings → Connections) chosen in place of a file.
    REMOTE_CONNECTION: Final[Spec[str]] = _s(
        "model.remote_connection",
        str,
        "",
        "Connection",
        "The connection whose model chats use; empty means a model on this computer.",
    )
    REMOTE_MODEL: Final[Spec[str]] = _s(
        "model.remote_model",
        str,
        "",
        "Server model",
        "The model on that connection's server.",
    )


class Generation:
    SYSTEM_PROMPT: Final[Spec[str]] = _s(
        "generation.system_prompt",
        str,
        "",
        "System prompt",
        "Instructions given to the model at the start of every new chat.",
    )
    TEMPERATURE: Final[Spec[float | None]] = _s(
        "generation.temperature",
        float,
        None,
        "Temperature",
        "Higher is more varied, lower more focused. Empty: the model's recommended value.",
        minimum=0.0,
        maximum=2.0,
        optional=True,
    )
    TOP_P: Final[Spec[float | None]] = _s(
        "generation.top_p",
        float,
        None,
        "Top-p",
        "Nucleus sampling cut-off.",
        minimum=0.05,
        maximum=1.0,
        optional=True,
    )
    TOP_K: Final[Spec[int | None]] = _s(
        "generation.top_k",
        int,
        None,
        "Top-k",
        "Sample among the k likeliest tokens (0 = all).",
        minimum=0,
        maximum=500,
        optional=True,
    )
    MIN_P: Final[Spec[float | None]] = _s(
        "generation.min_p",
        float,
        None,
        "Min-p",
        "Drop tokens less likely than this fraction of the likeliest.",
        minimum=0.0,
        maximum=1.0,
        optional=True,
    )
    PRESENCE_PENALTY: Final[Spec[float | None]] = _s(
        "generation.presence_penalty",
        float,
        None,
        "Presence penalty",
        "Discourages repeating what was already said.",
        minimum=0.0,
        maximum=2.0,
        optional=True,
    )
    MAX_TOKENS: Final[Spec[int]] = _s(
        "generation.max_tokens",
        int,
        4096,
        "Longest reply (tokens)",
        "A reply stops here; you can ask it to continue.",
        minimum=16,
        maximum=131072,
    )
    MAX_THINKING_TOKENS: Final[Spec[int]] = _s(
        "generation.max_thinking_tokens",
        int,
        4096,
        "Longest thinking (tokens)",
        "Thinking stops here and the model writes its answer; counted apart from the reply.",
        minimum=0,
        maximum=131072,
    )
    THINKING: Final[Spec[ThinkingMode]] = _s(
        "generation.thinking",
        ThinkingMode,
        ThinkingMode.MODEL,
        "Thinking",
        "Whether models that can think before answering do so in new chats.",
    )


class Performance:
    N_CTX: Final[Spec[int | None]] = _s(
        "performance.n_ctx",
        int,
        None,
        "Context length (tokens)",
        "How much of the conversation the model sees. Empty: as much as memory allows.",
        minimum=512,
        maximum=262144,
        optional=True,
        reload=True,
    )
    THREADS: Final[Spec[int | None]] = _s(
        "performance.threads",
        int,
        None,
        "Threads",
        "CPU threads for generation. Empty: the number of physical cores.",
        minimum=1,
        maximum=256,
        optional=True,
        reload=True,
    )
    GPU_LAYERS: Final[Spec[int | None]] = _s(
        "performance.gpu_layers",
        int,
        None,
        "GPU layers",
        "Layers on the GPU. Automatic: as many as fit its free memory; 0: the CPU only; "
        "-1: all of them.",
        minimum=-1,
        maximum=1000,
        optional=True,
        reload=True,
    )
    KV_CACHE_TYPE: Final[Spec[KvCache]] = _s(
        "performance.kv_cache_type",
        KvCache,
        KvCache.F16,
        "KV cache type",
        "q8_0 halves the cache's memory; it needs flash attention.",
        reload=True,
    )
    FLASH_ATTENTION: Final[Spec[bool]] = _s(
        "performance.flash_attention",
        bool,
        False,
        "Flash attention",
        "Faster attention and less memory on supported hardware.",
        reload=True,
    )
    IMAGE_TOKENS: Final[Spec[int]] = _s(
        "performance.image_tokens",
        int,
        384,
        "Image detail (tokens)",
        "How many tokens an attached image becomes for the model: more shows finer "
        "detail and takes longer to read (a laptop CPU reads ~15 a second on a 9B model).",
        minimum=64,
        maximum=4096,
        reload=True,
    )
    USE_MMAP: Final[Spec[bool]] = _s(
        "performance.use_mmap",
        bool,
        False,
        "Memory-map the model file",
        "Off: the weights are read into memory once (on CPU this uses less memory, as "
        "llama.cpp repacks them anyway).",
        reload=True,
    )


class Storage:
    """Privacy & storage. The folders are read through app.folders.Folders, their owner."""

    CHATS_DIR: Final[Spec[str]] = _s(
        "storage.chats_dir",
        str,
        "",
        "Chats folder",
        "Where the chat history is kept. Empty: Hearth's data folder.",
    )
    MODELS_DIR: Final[Spec[str]] = _s(
        "storage.models_dir",
        str,
        "",
        "Models folder",
        "Where downloaded models are kept. Empty: inside Hearth's data folder.",
    )
    # Issue 17: read by app/privacy.py, only when the chats are locked by a passphrase.
    LOCK_AFTER_MIN: Final[Spec[int]] = _s(
        "storage.lock_after_min",
        int,
        0,
        "Lock after idle (minutes)",
        "With a passphrase: hide the chats and ask for it after this many minutes "
        "without a key press or a click. 0: never.",
        minimum=0,
        maximum=24 * 60,
    )
    # Issue 17: the one-time offer to encrypt (app/privacy_offer.py), shown once this many
    # chats exist; "Not now" moves it further, "Don't ask again" sets 0 (never).
    ENCRYPT_OFFER_AT: Final[Spec[int]] = _s(
        "storage.encrypt_offer_at",
        int,
        3,
        "Offer encryption at",
        "After how many chats Hearth offers, once, to encrypt them. 0: never.",
        minimum=0,
    )


class Appearance:
    THEME: Final[Spec[Theme]] = _s(
        "appearance.theme", Theme, Theme.SYSTEM, "Theme", "Light, dark, or follow the system."
    )
    FONT_SIZE: Final[Spec[int | None]] = _s(
        "appearance.font_size",
        int,
        None,
        "Font size",
        "Text size in points for the conversation. Automatic: the system's.",
        minimum=6,
        maximum=32,
        optional=True,
    )


class Serve:
    """Other programs: Hearth's local OpenAI-compatible API (issue 15; app/serve_window.py)."""

    ENABLED: Final[Spec[bool]] = _s(
        "serve.enabled",
        bool,
        False,
        "Serve the loaded model to other programs on this computer",
        "Answer OpenAI-compatible requests (an editor, a script, a notes app) on 127.0.0.1 "
        "with the model loaded here, taking turns with the chats in this window.",
    )
    PORT: Final[Spec[int]] = _s(
        "serve.port",
        int,
        8765,
        "Port",
        "The port other programs connect to (http://127.0.0.1:PORT/v1).",
        minimum=1024,
        maximum=65535,
    )
    REQUIRE_KEY: Final[Spec[bool]] = _s(
        "serve.require_key",
        bool,
        True,
        "Require the API key",
        "Programs must send the key shown below; other people's accounts on this computer "
        "cannot use the model without it.",
    )


def _declared(*pages: type) -> tuple[Spec[Any], ...]:
    """The options of ``pages``, in the order they are declared (the order pages show)."""
    return tuple(v for page in pages for v in vars(page).values() if isinstance(v, Spec))


SCHEMA: tuple[Spec[Any], ...] = _declared(
    Model, Generation, Performance, Storage, Appearance, Serve
)
SPECS: dict[str, Spec[Any]] = {spec.key: spec for spec in SCHEMA}


class Settings:
    """The current values, loaded from and saved to one JSON file.

    Read and write through the declared options: ``settings[Performance.N_CTX]`` is an
    ``int | None`` and mypy checks both the option and the value given to ``set``. A key
    as text (``settings["performance.n_ctx"]``) is for code that walks the schema, like
    the Settings window's generic editors; its value is the untyped ``Value``.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._values: dict[str, Value] = {spec.key: spec.default for spec in SCHEMA}
        self.problems: list[str] = []  # sentences about what was reset, for the person
        self.backup: Path | None = None
        self._load()

    @overload
    def __getitem__(self, key: Spec[T]) -> T: ...
    @overload
    def __getitem__(self, key: str) -> Value: ...
    def __getitem__(self, key: Spec[Any] | str) -> Any:
        return self._values[key if isinstance(key, str) else key.key]

    def items(self) -> Iterator[tuple[str, Value]]:
        yield from self._values.items()

    @overload
    def set(self, key: Spec[T], value: T) -> bool: ...
    @overload
    def set(self, key: str, value: Value) -> bool: ...
    def set(self, key: Spec[Any] | str, value: Any) -> bool:
        """Set and save one value; returns whether it changed. Raises ValueError."""
        spec = SPECS[key] if isinstance(key, str) else key
        checked: Value = spec.check(value)
        if self._values[spec.key] == checked:
            return False
        self._values[spec.key] = checked
        self.save()
        return True

    def update(self, values: Mapping[str, Value]) -> list[str]:
        """Set several values at once (validated first, one save); the changed keys."""
        checked = {key: SPECS[key].check(value) for key, value in values.items()}
        changed = [key for key, value in checked.items() if self._values[key] != value]
        if changed:
            self._values.update(checked)
            self.save()
        return changed

    def save(self) -> None:
        data = {"version": SETTINGS_VERSION, "values": self._values}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".settings-", suffix=".json", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(data, fh, indent=2, sort_keys=True)
                fh.write("\n")
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def _load(self) -> None:
        if not self.path.exists():
            return
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            values = data["values"] if isinstance(data, dict) else None
            if not isinstance(values, dict):
                raise ValueError("no 'values' table")
        except (OSError, UnicodeDecodeError, ValueError, KeyError) as exc:
            self._keep_backup()
            self.problems.append(
                f"The settings file could not be read ({exc}); Hearth started with default "
                f"settings and kept the old file as {self.backup}."
            )
            return
        if data.get("version", 1) < 2 and values.get(Performance.GPU_LAYERS.key) == 0:
            # Version 1 saved its default, 0, for everyone (and showed no control for it
            # on a build without a GPU): that was no choice; Automatic is the new default.
            values = {**values, Performance.GPU_LAYERS.key: None}
        bad: list[str] = []
        for key, raw in values.items():
            spec = SPECS.get(key)
            if spec is None:
                continue  # an option from another version: ignored, kept in the backup
            try:
                self._values[key] = spec.check(raw)
            except ValueError as exc:
                bad.append(f"{spec.label} ({key}: {exc})")
        if bad:
            self._keep_backup()
            self.problems.append(
                "Some settings had values Hearth cannot use and were reset to their defaults: "
                + "; ".join(bad)
                + f". The original file was kept as {self.backup}."
            )
            self.save()  # the cleaned values, so the file and the app agree again

    def _keep_backup(self) -> None:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        self.backup = self.path.with_name(f"{self.path.name}.bad-{stamp}")
        self.path.replace(self.backup)


def model_choice(settings: Settings) -> ModelChoice:
    """The model the person chose in Settings → Model."""
    return ModelChoice(
        family=settings[Model.FAMILY],
        quant=settings[Model.QUANT] or AUTO,
        path=settings[Model.PATH],
    )


def engine_options(settings: Settings) -> EngineOptions:
    """EngineOptions from the saved settings (None = Hearth decides)."""
    n_ctx = settings[Performance.N_CTX]
    kv: KvCacheType = "q8_0" if settings[Performance.KV_CACHE_TYPE] is KvCache.Q8_0 else "f16"
    return EngineOptions(
        # Automatic: what Hearth wants; engine.models.choice.load_options fits it to the machine.
        n_ctx=n_ctx if n_ctx is not None else AUTO_CONTEXT,
        n_threads=settings[Performance.THREADS],
        n_gpu_layers=settings[Performance.GPU_LAYERS],
        use_mmap=settings[Performance.USE_MMAP],
        # A quantized V cache needs flash attention: turn it on rather than fail to load.
        flash_attn=settings[Performance.FLASH_ATTENTION] or kv != "f16",
        kv_cache_type=kv,
        image_max_tokens=settings[Performance.IMAGE_TOKENS],
        no_vision=tuple(n for n in settings[Model.NO_VISION].split("|") if n),
    )


# The sampling fields a person may set; unset ones come from the model's defaults.
SAMPLING: tuple[tuple[str, Spec[float | None] | Spec[int | None]], ...] = (
    ("temperature", Generation.TEMPERATURE),
    ("top_p", Generation.TOP_P),
    ("top_k", Generation.TOP_K),
    ("min_p", Generation.MIN_P),
    ("presence_penalty", Generation.PRESENCE_PENALTY),
)


def sampling_overrides(settings: Settings) -> dict[str, float | int]:
    """The sampling fields the person set; the rest come from the model's defaults."""
    overrides: dict[str, float | int] = {
        "max_tokens": settings[Generation.MAX_TOKENS],
        "max_thinking_tokens": settings[Generation.MAX_THINKING_TOKENS],
    }
    for field, spec in SAMPLING:
        value = settings[spec]
        if value is not None:
            overrides[field] = value
    return overrides
