"""Per-model sampling defaults, every field set.

llama-cpp-python's defaults differ from call to call, and the right values
differ from model to model, so Hearth always decides them here. The layers, each
overriding the one before:

1. a generic default: temperature 0.7, top_p 0.9, top_k 40, min_p 0.05; models
   under a billion parameters get temperature 0.3 and repeat penalty 1.1, because
   tiny models at 0.7 loop (the starter SmolLM2-135M repeats "a beacon of choice,
   a beacon of choice..." there);
2. the GGUF's ``general.sampling.*`` keys, written by the model's makers;
3. published per-mode presets of model families Hearth knows (Qwen3.5: thinking
   temperature 1.0, top_p 0.95, top_k 20, min_p 0, presence penalty 1.5;
   non-thinking 0.7, 0.8, 20, 0, 1.5), which win over (2) because a GGUF has one
   set for both modes;
4. the catalog entry's ``sampling`` object (curated by Hearth for that file).

A chat's own settings override the result (``dataclasses.replace``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import fields
from typing import Any

import llama_cpp

from engine.types import SamplingParams

__all__ = [
    "QWEN35_INSTRUCT",
    "QWEN35_THINKING",
    "default_sampling",
    "make_sampler",
    "sampling_overrides",
]

_log = logging.getLogger(__name__)

_PENALTY_LAST_N = 64  # llama.cpp's default window for repeat/presence/frequency penalties

# https://huggingface.co/Qwen/Qwen3.5-9B (model card, "Best Practices")
QWEN35_THINKING: Mapping[str, float] = {
    "temperature": 1.0,
    "top_p": 0.95,
    "top_k": 20,
    "min_p": 0.0,
    "presence_penalty": 1.5,
    "repeat_penalty": 1.0,
}
QWEN35_INSTRUCT: Mapping[str, float] = {
    "temperature": 0.7,
    "top_p": 0.8,
    "top_k": 20,
    "min_p": 0.0,
    "presence_penalty": 1.5,
    "repeat_penalty": 1.0,
}
_FAMILIES: dict[str, tuple[Mapping[str, float], Mapping[str, float]]] = {
    # architecture: (thinking, non-thinking)
    "qwen35": (QWEN35_THINKING, QWEN35_INSTRUCT),
    "qwen35moe": (QWEN35_THINKING, QWEN35_INSTRUCT),
}

_GENERIC: Mapping[str, float] = {
    "temperature": 0.7,
    "top_p": 0.9,
    "top_k": 40,
    "min_p": 0.05,
    "repeat_penalty": 1.0,
    "presence_penalty": 0.0,
    "frequency_penalty": 0.0,
}
_SMALL_MODEL_PARAMS = 1_000_000_000
_SMALL: Mapping[str, float] = {"temperature": 0.3, "repeat_penalty": 1.1}

# GGUF general.sampling.<key> -> SamplingParams field (llama.cpp's common/arg.cpp names).
_GGUF_KEYS = {
    "temp": "temperature",
    "top_p": "top_p",
    "top_k": "top_k",
    "min_p": "min_p",
    "penalty_repeat": "repeat_penalty",
}
_ALIASES = {**_GGUF_KEYS, "temperature": "temperature"}
_FIELDS = {f.name for f in fields(SamplingParams)} - {"max_tokens", "max_thinking_tokens", "seed"}


def sampling_overrides(raw: Mapping[str, object], *, source: str) -> dict[str, float]:
    """The sampler fields in ``raw`` (field names or llama.cpp's names), invalid ones
    skipped with a log line: a bad value in a file must not stop a chat."""
    out: dict[str, float] = {}
    for key, value in raw.items():
        name = key if key in _FIELDS else _ALIASES.get(key)
        if name is None:
            continue
        try:
            number = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            _log.warning("ignoring %s sampling value %s=%r", source, key, value)
            continue
        out[name] = number
    return out


def default_sampling(
    *,
    architecture: str,
    metadata: Mapping[str, str],
    n_params: int,
    thinking: bool,
    catalog: Mapping[str, float] | None = None,
) -> SamplingParams:
    """The sampling a model should use when the chat sets nothing (see the module doc)."""
    values: dict[str, float] = dict(_GENERIC)
    if 0 < n_params < _SMALL_MODEL_PARAMS:
        values.update(_SMALL)
    prefix = "general.sampling."
    gguf = {k[len(prefix) :]: v for k, v in metadata.items() if k.startswith(prefix)}
    values.update(
        sampling_overrides({k: v for k, v in gguf.items() if k in _GGUF_KEYS}, source="GGUF")
    )
    family = _FAMILIES.get(architecture.lower())
    if family is not None:
        values.update(family[0] if thinking else family[1])
    if catalog:
        values.update(sampling_overrides(catalog, source="catalog"))
    try:
        return _params(values)
    except ValueError:  # out of range (e.g. top_p 0 in a file): keep the safe layers only
        _log.warning("sampling defaults %r rejected; using the generic ones", values)
        return _params(_GENERIC)


def _params(values: Mapping[str, float]) -> SamplingParams:
    return SamplingParams(
        temperature=values["temperature"],
        top_p=values["top_p"],
        top_k=int(values["top_k"]),
        min_p=values["min_p"],
        repeat_penalty=values["repeat_penalty"],
        presence_penalty=values["presence_penalty"],
        frequency_penalty=values["frequency_penalty"],
    )


def make_sampler(params: SamplingParams, *, n_vocab: int, seed: int) -> Any:
    """A llama.cpp sampler chain (``Llama._init_sampler``'s order) with every field
    from ``params``; free it with ``llama_sampler_free``.

    An explicit per-reply ``params.seed`` wins (0 included); otherwise ``seed``
    (the load-time one), where 0 means "random" as for ``Llama(seed=...)``.
    """
    chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
    add = llama_cpp.llama_sampler_chain_add
    add(
        chain,
        llama_cpp.llama_sampler_init_penalties(
            n_vocab,
            _PENALTY_LAST_N,
            params.repeat_penalty,
            params.frequency_penalty,
            params.presence_penalty,
        ),
    )
    if params.temperature == 0:
        add(chain, llama_cpp.llama_sampler_init_greedy())
        return chain
    add(chain, llama_cpp.llama_sampler_init_top_k(params.top_k))  # 0 = off
    add(chain, llama_cpp.llama_sampler_init_top_p(params.top_p, 1))
    add(chain, llama_cpp.llama_sampler_init_min_p(params.min_p, 1))
    add(chain, llama_cpp.llama_sampler_init_temp(params.temperature))
    if params.seed is not None:
        seed = params.seed & 0xFFFFFFFF
    add(chain, llama_cpp.llama_sampler_init_dist(seed or llama_cpp.LLAMA_DEFAULT_SEED))
    return chain
