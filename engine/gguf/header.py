"""A fast, read-only GGUF header reader, and what the memory estimator takes from it.

``gguf.GGUFReader`` builds a numpy view per array element; for a 248k-token
vocabulary that takes seconds. Hearth needs the scalar metadata, the lengths
of the tokenizer arrays and the tensors' types and shapes, which this reads
in tens of milliseconds by skipping over arrays. Tensor byte sizes come from
the ``gguf`` package's table of quantization block sizes.
"""

from __future__ import annotations

import math
import mmap
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.gguf.arch import ModelArch

__all__ = ["GGUFError", "GGUFHeader", "arch_from_header", "read_gguf_arch", "read_gguf_header"]

_MAGIC = b"GGUF"
_SMALL_ARRAY = 1024  # arrays up to this length are kept (per-layer values); longer ones counted
# GGUFValueType: struct format of each fixed-size scalar type.
_SCALARS = {
    0: "B",
    1: "b",
    2: "H",
    3: "h",
    4: "I",
    5: "i",
    6: "f",
    7: "?",
    10: "Q",
    11: "q",
    12: "d",
}
_STRING, _ARRAY = 8, 9
_LAYER = re.compile(r"^blk\.(\d+)\.")


class GGUFError(ValueError):
    """The file is not a GGUF file this reader understands (bad magic, version, truncated)."""


@dataclass(frozen=True, slots=True)
class TensorInfo:
    name: str
    ggml_type: int
    shape: tuple[int, ...]

    @property
    def n_elements(self) -> int:
        return math.prod(self.shape)


@dataclass(slots=True)
class GGUFHeader:
    version: int
    fields: dict[str, object] = field(default_factory=dict)
    array_lengths: dict[str, int] = field(default_factory=dict)
    tensors: list[TensorInfo] = field(default_factory=list)

    def _loaded(self, skip_layers_from: int | None) -> list[TensorInfo]:
        if skip_layers_from is None:
            return self.tensors
        return [
            t
            for t in self.tensors
            if not ((m := _LAYER.match(t.name)) and int(m[1]) >= skip_layers_from)
        ]

    def tensor_count(self, *, skip_layers_from: int | None = None) -> int:
        return len(self._loaded(skip_layers_from))

    def repacked_bytes(self, *, skip_layers_from: int | None = None) -> int:
        """Bytes of weights llama.cpp's CPU backend copies into repacked buffers on AVX2.

        ggml-cpu/repack.cpp: 2-D (3-D for experts) matmul weights of type Q4_0,
        Q4_K, IQ4_NL or MXFP4 with a row count divisible by 8. (AVX-512 machines
        also repack Q2_K; ARM repacks more types. Not counted here.)
        """
        from gguf import GGMLQuantizationType as T

        kinds = {T.Q4_0, T.Q4_K, T.IQ4_NL, T.MXFP4}
        return sum(
            self._bytes(t)
            for t in self._loaded(skip_layers_from)
            if t.ggml_type in kinds
            and len(t.shape) in (2, 3)
            and t.shape[1] % 8 == 0
            and t.name != "token_embd.weight"  # looked up by row, never multiplied
        )

    def _bytes(self, tensor: TensorInfo) -> int:
        from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

        try:
            block, size = GGML_QUANT_SIZES[GGMLQuantizationType(tensor.ggml_type)]
        except (ValueError, KeyError) as exc:
            raise GGUFError(f"tensor {tensor.name} has unknown type {tensor.ggml_type}") from exc
        return tensor.n_elements // block * size

    def weights_bytes(self, *, skip_layers_from: int | None = None) -> int:
        """Bytes of tensor data, leaving out layers >= ``skip_layers_from``.

        llama.cpp does not load multi-token-prediction layers (blk.N and up
        for N = block_count - nextn_predict_layers) unless asked to.
        """
        return sum(self._bytes(t) for t in self._loaded(skip_layers_from))


class Cursor:
    def __init__(self, buf: mmap.mmap) -> None:
        self.buf = buf
        self.pos = 0

    def unpack(self, fmt: str) -> Any:
        try:
            (value,) = struct.unpack_from("<" + fmt, self.buf, self.pos)
        except struct.error as exc:
            raise GGUFError("the file ends inside its header (truncated download?)") from exc
        self.pos += struct.calcsize(fmt)
        return value

    def u32(self) -> int:
        return int(self.unpack("I"))

    def u64(self) -> int:
        return int(self.unpack("Q"))

    def string(self) -> str:
        n = self.u64()
        end = self.pos + n
        if end > len(self.buf):
            raise GGUFError("the file ends inside its header (truncated download?)")
        raw = self.buf[self.pos : end]
        self.pos = end
        return raw.decode("utf-8", "replace")

    def skip_string(self) -> None:
        n = self.u64()
        self.pos += n
        if self.pos > len(self.buf):
            raise GGUFError("the file ends inside its header (truncated download?)")

    def value(self, kind: int) -> object:
        if kind in _SCALARS:
            return self.unpack(_SCALARS[kind])
        if kind == _STRING:
            return self.string()
        raise GGUFError(f"unknown metadata value type {kind}")


def read_header(cur: Cursor) -> GGUFHeader:
    if bytes(cur.buf[:4]) != _MAGIC:
        raise GGUFError("not a GGUF file (wrong magic bytes)")
    cur.pos = 4
    version = cur.u32()
    if version not in (2, 3):
        raise GGUFError(f"GGUF version {version} is not supported (2 and 3 are)")
    n_tensors, n_fields = cur.u64(), cur.u64()
    if n_tensors > 1_000_000 or n_fields > 1_000_000:
        raise GGUFError("implausible tensor or metadata count (damaged header)")
    header = GGUFHeader(version=version)
    for _ in range(n_fields):
        name = cur.string()
        kind = cur.u32()
        if kind != _ARRAY:
            header.fields[name] = cur.value(kind)
            continue
        item, count = cur.u32(), cur.u64()
        header.array_lengths[name] = count
        if count <= _SMALL_ARRAY:
            header.fields[name] = [cur.value(item) for _ in range(count)]
        elif item == _STRING:
            for _ in range(count):
                cur.skip_string()
        elif item in _SCALARS:
            cur.pos += count * struct.calcsize(_SCALARS[item])
        else:
            raise GGUFError(f"{name}: arrays of type {item} are not supported")
    for _ in range(n_tensors):
        name = cur.string()
        n_dims = cur.u32()
        if n_dims > 8:
            raise GGUFError(f"tensor {name} has {n_dims} dimensions (damaged header)")
        shape = tuple(cur.u64() for _ in range(n_dims))
        ggml_type = cur.u32()
        cur.u64()  # offset into the data section
        header.tensors.append(TensorInfo(name, ggml_type, shape))
    return header


def read_gguf_header(path: Path) -> GGUFHeader:
    """Parse ``path``'s header. Raises GGUFError for non-GGUF or damaged files, OSError to read."""
    with path.open("rb") as f:
        try:
            buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except ValueError as exc:  # an empty file cannot be mapped
            raise GGUFError("the file is empty") from exc
        with buf:
            return read_header(Cursor(buf))


# -- the estimator's view ----------------------------------------------------------------

# Architectures whose every layer is recurrent (no KV cache at all).
_ALL_RECURRENT = {"mamba", "mamba2", "rwkv6", "rwkv6qwen2", "rwkv7", "arwkv7"}
# Hybrids that mark attention layers by an interval (llama.cpp's default is 4).
_INTERVAL_HYBRIDS = {"qwen3next", "qwen35", "qwen35moe"}
# Sliding-window patterns llama.cpp hard-codes: every n-th layer is global.
_SWA_PATTERN = {"gemma2": 2, "gemma3": 6, "cohere2": 4, "gemma-embedding": 6}


def _per_layer(value: object, n_layer: int, default: int) -> list[int]:
    if isinstance(value, list):
        values = [int(v) for v in value[:n_layer]]
        return values + [values[-1] if values else default] * (n_layer - len(values))
    return [int(value) if isinstance(value, int | float) else default] * n_layer


def arch_from_header(header: GGUFHeader) -> ModelArch:
    """The estimator's view of a GGUF file. Raises ValueError on a header it cannot use."""
    kv = header.fields
    arch = str(kv.get("general.architecture", ""))
    if not arch:
        raise ValueError("general.architecture is missing")

    def key(name: str, default: object = None) -> object:
        return kv.get(f"{arch}.{name}", default)

    def num(name: str, default: int = 0) -> int:
        value = key(name, default)
        if isinstance(value, list):
            return max((int(v) for v in value), default=default)
        return int(value) if isinstance(value, int | float) else default

    n_layer_all = num("block_count")
    if n_layer_all <= 0:
        raise ValueError(f"{arch}.block_count is missing")
    n_layer = n_layer_all - num("nextn_predict_layers")  # multi-token-prediction layers
    n_embd = num("embedding_length")
    n_head = num("attention.head_count")
    n_head_kv_layers = _per_layer(key("attention.head_count_kv"), n_layer, max(n_head, 1))
    head_k = num("attention.key_length") or (n_embd // n_head if n_head else 0)
    head_v = num("attention.value_length") or head_k

    recurrent_flags = key("attention.recurrent_layers")
    if arch in _ALL_RECURRENT:
        recurrent = [True] * n_layer
    elif isinstance(recurrent_flags, list):
        recurrent = [bool(v) for v in recurrent_flags[:n_layer]]
    elif arch in _INTERVAL_HYBRIDS:
        interval = num("full_attention_interval", 4) or 4
        recurrent = [(i + 1) % interval != 0 for i in range(n_layer)]
    else:  # jamba, lfm2, nemotron-h...: a layer without KV heads keeps a state instead
        recurrent = [n == 0 for n in n_head_kv_layers]
    recurrent += [False] * (n_layer - len(recurrent))
    attention = [not r and n > 0 for r, n in zip(recurrent, n_head_kv_layers, strict=True)]

    n_swa = num("attention.sliding_window")
    pattern = key("attention.sliding_window_pattern")
    if n_swa and isinstance(pattern, list):
        swa = sum(1 for i, a in enumerate(attention) if a and i < len(pattern) and pattern[i])
    elif n_swa and arch in _SWA_PATTERN:
        every = _SWA_PATTERN[arch]
        swa = sum(1 for i, a in enumerate(attention) if a and (i + 1) % every != 0)
    else:
        swa = sum(attention) if n_swa else 0

    inner, state = num("ssm.inner_size"), num("ssm.state_size")
    if arch.startswith(("rwkv", "arwkv")):
        head_size = num("wkv.head_size")
        floats = num("token_shift_count", 2) * n_embd + n_embd * head_size
    elif inner:
        floats = ModelArch.ssm_state_floats(
            conv_kernel=num("ssm.conv_kernel"), inner=inner, state=state,
            groups=num("ssm.group_count"),
        )  # fmt: skip
    else:
        floats = n_embd * max(num("shortconv.l_cache") - 1, 0)  # LFM2's short convolutions
    n_ff = num("feed_forward_length")
    n_ff = max(n_ff, num("expert_feed_forward_length") * max(num("expert_used_count"), 1))

    return ModelArch(
        architecture=arch,
        n_layer=n_layer,
        n_embd=n_embd,
        n_ff=n_ff,
        n_head=n_head,
        n_head_kv=max(n_head_kv_layers, default=0),
        head_dim_k=head_k,
        head_dim_v=head_v,
        attention_layers=sum(attention),
        swa_layers=swa,
        n_swa=n_swa,
        recurrent_layers=sum(1 for r in recurrent if r),
        recurrent_floats=floats,
        ssm_inner=inner,
        n_vocab=header.array_lengths.get("tokenizer.ggml.tokens", 0) or num("vocab_size"),
        n_merges=header.array_lengths.get("tokenizer.ggml.merges", 0),
        n_ctx_train=num("context_length") or 4096,
        weights_bytes=header.weights_bytes(skip_layers_from=n_layer),
        n_tensors=header.tensor_count(skip_layers_from=n_layer),
        repacked_bytes=header.repacked_bytes(skip_layers_from=n_layer),
    )


def read_gguf_arch(path: Path) -> ModelArch:
    """The estimator's view of a GGUF file, from its header only (milliseconds, no load)."""
    return arch_from_header(read_gguf_header(path))
