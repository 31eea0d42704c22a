"""Is this file a GGUF model this llama.cpp can chat with? Decided from the header alone.

``validate_gguf(path)`` reads the header only and raises a ``BadModelFile`` with a
sentence for a file that is not GGUF, a GGUF version llama.cpp does not read, a
damaged or truncated file, or an architecture this llama.cpp build cannot run (or
cannot chat with), so such a file never reaches llama.cpp's loader (which would only
say "failed to load model"). ``engine.inference.loader`` calls it before every load; the
model manager and ``hearth import`` call it before copying anything.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass
from pathlib import Path

from engine.errors import ModelInstallError
from engine.gguf.header import Cursor, GGUFError, GGUFHeader, read_header

__all__ = [
    "NOT_FOR_CHAT",
    "SUPPORTED_ARCHITECTURES",
    "BadModelFile",
    "DamagedModelFile",
    "GGUFInfo",
    "NotAModelFile",
    "UnsupportedArchitecture",
    "UnsupportedGGUFVersion",
    "validate_gguf",
]

# Architectures llama-cpp-python 0.3.36's llama.cpp can build a model for: every case of
# llama_model_mapping() in vendor/llama.cpp/src/llama-model.cpp, named as in LLM_ARCH_NAMES
# (src/llama-arch.cpp). Not here: "gptj" (named, but no implementation: "unsupported model
# architecture"), "clip" (a vision projector: "CLIP cannot be used as main model").
# tests/unit/test_library.py checks each name is in the libllama this Hearth runs on.
# Update together with the llama-cpp-python pin.
SUPPORTED_ARCHITECTURES = frozenset(
    """
    afmoe apertus arcee arctic arwkv7 baichuan bailingmoe bailingmoe2 bailingmoe3 bert
    bitnet bloom chameleon chatglm codeshell cogvlm cohere2 cohere2moe command-r dbrx deci
    deepseek deepseek2 deepseek2-ocr deepseek32 deepseek4 dflash dots1 dots3note dream
    eagle3 ernie4_5 ernie4_5-moe eurobert exaone exaone-moe exaone4 falcon falcon-h1 gemma
    gemma-embedding gemma2 gemma3 gemma3n gemma4 gemma4-assistant glm-dsa glm4 glm4moe
    glm5-next gpt-oss gpt2 gptneox granite granite_swa granitehybrid granitemoe
    graniteswitch grok grovemoe hrm_text hunyuan-dense hunyuan-moe hunyuan_vl hy_v3 hy_v4
    internlm2 jais jais2 jamba jina-bert-v2 jina-bert-v3 kimi-k3 kimi-linear laguna lfm2
    lfm2moe llada llada-moe llama llama-embed llama4 maincoder mamba mamba2 maple mellum
    mimo2 minicpm minicpm3 minimax-01 minimax-m2 minimax-m3 mistral3 mistral4 modern-bert
    mpt muse-glimmer nanbeige nemotron nemotron_h nemotron_h_moe neo-bert nomic-bert
    nomic-bert-moe olmo olmo2 olmoe openelm orion paddleocr pangu-embedded phi2 phi3 phimoe
    plamo plamo2 plamo3 plm pockettts qwen qwen2 qwen2moe qwen2vl qwen3 qwen35 qwen35moe
    qwen3moe qwen3next qwen3tts qwen3vl qwen3vlmoe qwen4exp refact rnd1 rwkv6 rwkv6qwen2
    rwkv7 seed_oss smallthinker smollm3 spark2_5 stablelm starcoder starcoder2 step35 t5
    t5encoder talkie wavtokenizer-dec xverse
    """.split()  # noqa: SIM905 (a word list reads and diffs better than 150 literals)
)
# Loadable, but not something to chat with: what each is, for the sentence. Encoders and
# embedding models (non-causal attention or no decoder: llama_model_has_decoder, the
# models/*.cpp that set causal_attn = false), a vocoder, and diffusion language models,
# which need their own sampler rather than Hearth's token-by-token one.
NOT_FOR_CHAT = {
    **dict.fromkeys(
        ("bert", "modern-bert", "nomic-bert", "nomic-bert-moe", "neo-bert", "jina-bert-v2",
         "jina-bert-v3", "eurobert", "gemma-embedding", "t5encoder"),
        "an embedding model (it turns text into vectors, it cannot write replies)",
    ),
    "wavtokenizer-dec": "part of a speech model (an audio decoder), not a language model",
    **dict.fromkeys(
        ("dream", "llada", "llada-moe", "rnd1"),
        "a diffusion language model, which Hearth's chat cannot run yet",
    ),
}  # fmt: skip

_GGUF_VERSIONS = (2, 3)  # what llama.cpp's gguf.cpp reads (v1 was dropped long ago)


class BadModelFile(ModelInstallError):
    """A file Hearth will not hand to llama.cpp, with the reason as a sentence."""


class NotAModelFile(BadModelFile):
    """Not GGUF at all (wrong magic bytes, empty, a folder)."""


class UnsupportedGGUFVersion(BadModelFile):
    """GGUF, but a version of the format llama.cpp does not read."""


class DamagedModelFile(BadModelFile):
    """GGUF whose header or tensor data is unreadable or cut short (an unfinished download)."""


class UnsupportedArchitecture(BadModelFile):
    """A model architecture this llama.cpp build cannot run, or cannot chat with."""


@dataclass(frozen=True, slots=True, kw_only=True)
class GGUFInfo:
    """What the header says about a valid GGUF file (from ``validate_gguf``)."""

    path: Path
    version: int
    architecture: str
    name: str  # general.name, or the file name without .gguf
    quantization: str  # e.g. "Q4_K_M", from general.file_type; "" when not said
    size: int  # bytes on disk
    n_tensors: int
    context_length: int | None
    header: GGUFHeader


def _quantization(file_type: object) -> str:
    if not isinstance(file_type, int):
        return ""
    from gguf import LlamaFileType

    try:
        return LlamaFileType(file_type).name.removeprefix("MOSTLY_")
    except ValueError:
        return ""


def _data_needed(header: GGUFHeader, header_end: int, raw: mmap.mmap) -> int:
    """Bytes the file must have for every tensor's data (llama.cpp refuses a shorter file).

    ``engine.gguf.header`` keeps no tensor offsets, so they are read here from the
    tensor-info records, which end at ``header_end``: name, n_dims, dims, type, offset.
    """
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    records = [8 + len(t.name.encode()) + 4 + 8 * len(t.shape) + 4 + 8 for t in header.tensors]
    pos = header_end - sum(records)
    alignment = header.fields.get("general.alignment", 32)
    if not isinstance(alignment, int) or alignment <= 0 or alignment & (alignment - 1):
        raise DamagedModelFile("general.alignment is not a power of two")
    data_start = -(-header_end // alignment) * alignment
    needed = data_start
    for tensor, size in zip(header.tensors, records, strict=True):
        (offset,) = struct.unpack_from("<Q", raw, pos + size - 8)
        pos += size
        try:
            block, block_bytes = GGML_QUANT_SIZES[GGMLQuantizationType(tensor.ggml_type)]
        except (ValueError, KeyError) as exc:
            raise DamagedModelFile(f"tensor {tensor.name} has unknown type") from exc
        if offset % alignment:
            raise DamagedModelFile(f"tensor {tensor.name} is misaligned")
        needed = max(needed, data_start + offset + tensor.n_elements // block * block_bytes)
    return needed


def validate_gguf(path: Path) -> GGUFInfo:
    """Check ``path`` is a GGUF model this llama.cpp can run, reading its header only.

    Raises a ``BadModelFile`` subclass whose message is one sentence naming the
    file, saying what is wrong and what to do. Milliseconds even for big files.
    """
    name = path.name
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            start = f.read(8)
    except IsADirectoryError as exc:
        raise NotAModelFile(f"{name} is a folder, not a model file: pick a .gguf file.") from exc
    except FileNotFoundError as exc:
        raise NotAModelFile(f"{path} does not exist: check the path and try again.") from exc
    except OSError as exc:
        raise BadModelFile(
            f"Hearth could not read {name} ({exc.strerror or exc}): check that the file is "
            "readable and try again.",
            detail=repr(exc),
        ) from exc
    if start[:4] != b"GGUF":
        raise NotAModelFile(
            f"{name} is not a GGUF model file: Hearth runs .gguf files, such as the ones on "
            "Hugging Face marked GGUF.",
            detail=f"starts with {start[:4]!r}",
        )
    version = struct.unpack("<I", start[4:8])[0] if len(start) == 8 else -1
    if version not in _GGUF_VERSIONS:
        raise UnsupportedGGUFVersion(
            f"{name} is written in GGUF version {version}, which this version of Hearth cannot "
            f"read (it reads versions {' and '.join(map(str, _GGUF_VERSIONS))}): get a newer "
            "conversion of the model, or a newer Hearth.",
            detail=f"GGUF version {version}",
        )
    damaged = (
        f"{name} is damaged or incomplete (perhaps an unfinished download): download or "
        "copy it again."
    )
    try:
        with path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            cursor = Cursor(buf)
            header = read_header(cursor)
            needed = _data_needed(header, cursor.pos, buf)
    except (GGUFError, struct.error, UnicodeError, ValueError) as exc:
        raise DamagedModelFile(damaged, detail=str(exc)) from exc
    except OSError as exc:
        raise BadModelFile(
            f"Hearth could not read {name} ({exc.strerror or exc}): check that the file is "
            "readable and try again.",
            detail=repr(exc),
        ) from exc
    if size < needed:
        raise DamagedModelFile(damaged, detail=f"{size} bytes, tensors need {needed}")
    arch = header.fields.get("general.architecture")
    if not isinstance(arch, str) or not arch:
        raise DamagedModelFile(damaged, detail="general.architecture is missing")
    if arch not in SUPPORTED_ARCHITECTURES:
        raise UnsupportedArchitecture(
            f"{name} is a model of type {arch!r}, which this version of Hearth cannot run: "
            "pick a model of a supported type (Qwen, Llama, Gemma, Mistral, Phi and many "
            "more) or update Hearth.",
            detail=f"architecture {arch}",
        )
    if arch in NOT_FOR_CHAT:
        raise UnsupportedArchitecture(
            f"{name} is {NOT_FOR_CHAT[arch]}: pick a chat or instruct model instead.",
            detail=f"architecture {arch}",
        )
    ctx = header.fields.get(f"{arch}.context_length")
    title = header.fields.get("general.name")
    return GGUFInfo(
        path=path,
        version=version,
        architecture=arch,
        name=title if isinstance(title, str) and title.strip() else path.stem,
        quantization=_quantization(header.fields.get("general.file_type")),
        size=size,
        n_tensors=len(header.tensors),
        context_length=ctx if isinstance(ctx, int) else None,
        header=header,
    )
