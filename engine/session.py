"""ChatSession: the one object that owns a ``llama_cpp.Llama``.

It renders the conversation with the model's chat template, reuses the
already-evaluated prefix of the KV cache, and runs a lean token loop that does
per token only what ``Llama.generate`` does (sample, one-token decode) plus an
O(1) incremental detokenize. It is not thread-safe: one thread owns it for its
whole life, and other threads only set the ``stop`` event.
"""

from __future__ import annotations

import logging
import threading
import time
from array import array
from collections.abc import Generator, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import llama_cpp

from engine.chat_template import ChatTemplate, choose_template, render
from engine.detok import Detokenizer, piece_function
from engine.errors import ContextFullError, GenerationError
from engine.llama_load import (
    check_gguf_file,
    install_log_bridge,
    load_llama,
    log_state,
    quantization_name,
    recent_problems,
)
from engine.types import (
    EngineOptions,
    Event,
    FinishReason,
    GenerationStats,
    Message,
    ModelInfo,
    ReplyDone,
    SamplingParams,
    TextDelta,
)

__all__ = ["ChatSession"]

_log = logging.getLogger(__name__)

_PENALTY_LAST_N = 64  # llama.cpp's default window for repeat/presence/frequency penalties
# A one-token decode slower than this gets llama.cpp's abort callback, so Stop
# interrupts it mid-token. The callback is a Python call per graph node (~600 per
# token for SmolLM2, ~0.2 us each): about 2% on a 5 ms token, noise on a slow one.
_SLOW_TOKEN_S = 0.05
_NULL_ABORT = llama_cpp.ggml_abort_callback(0)
_DEFAULT_OPTIONS = EngineOptions()


class ChatSession:
    """A loaded model and its context window, ready to stream replies."""

    def __init__(self, model_path: str | Path, options: EngineOptions = _DEFAULT_OPTIONS) -> None:
        path = Path(model_path)
        check_gguf_file(path)
        install_log_bridge()
        self._options = options
        self._llm: Any = load_llama(path, options)
        self._abort_cb: Any = None
        self._active: Generator[Event, None, None] | None = None
        try:
            self._setup(path)
        except BaseException:
            self._llm.close()
            raise
        self.last_stats: GenerationStats | None = None

    def _setup(self, path: Path) -> None:
        llm = self._llm
        model = llm._model
        self._ctx = llm._ctx.ctx
        self._vocab = model.vocab
        self._memory = llama_cpp.llama_get_memory(self._ctx)
        self._batch = llm._batch  # reused for every decode: no allocation per token
        self._n_batch = int(llm.n_batch)
        self._n_ctx = int(llm.n_ctx())
        self._n_swa = int(llama_cpp.llama_model_n_swa(model.model))
        self._n_vocab = int(llm.n_vocab())
        # Mirror of the tokens in the KV cache (positions 0.._n_past-1).
        self._kv = array("i", bytes(4 * self._n_ctx))
        self._n_past = 0

        md: dict[str, str] = dict(llm.metadata)
        self._metadata = md
        bos_id, eos_id = int(model.token_bos()), int(model.token_eos())
        self._bos_text = _token_text(model, bos_id)
        self._eos_text = _token_text(model, eos_id)
        self._add_bos = bool(llama_cpp.llama_vocab_get_add_bos(self._vocab)) and bos_id >= 0
        architecture = md.get("general.architecture", "unknown")
        gguf_template = md.get("tokenizer.chat_template")
        self._template: ChatTemplate = choose_template(
            gguf_template, architecture, tokenizer_pre=md.get("tokenizer.ggml.pre", "")
        )
        # SentencePiece tokenizers with add_space_prefix put a space before the
        # first word of any text, including a reply; llama.cpp defaults it to on.
        is_spm = int(llama_cpp.llama_vocab_type(self._vocab)) == llama_cpp.LLAMA_VOCAB_TYPE_SPM
        self._strip_space = is_spm and md.get("tokenizer.ggml.add_space_prefix", "true") == "true"
        self._piece = piece_function(self._vocab)

        self.info = ModelInfo(
            path=str(path),
            name=md.get("general.name") or path.stem,
            architecture=architecture,
            quantization=quantization_name(md.get("general.file_type")),
            file_size=path.stat().st_size,
            n_ctx=self._n_ctx,
            n_ctx_train=int(model.n_ctx_train()),
            has_chat_template=bool(gguf_template and gguf_template.strip()),
            template_source=self._template.source,
            extra={
                "description": model.desc(),
                "parameters": str(int(model.n_params())),
                "threads": str(llm.n_threads),
            },
        )
        _log.info(
            "loaded %s (%s, %s, n_ctx=%d, template %s)",
            self.info.name,
            architecture,
            self.info.quantization,
            self._n_ctx,
            self._template.source,
        )

    # -- prompt --------------------------------------------------------------

    def render_prompt(
        self, conversation: Sequence[Message], *, extra: Mapping[str, object] | None = None
    ) -> str:
        """The conversation as the model sees it, ending with the assistant cue."""
        return render(
            self._template,
            conversation,
            bos_token=self._bos_text,
            eos_token=self._eos_text,
            add_generation_prompt=True,
            extra=extra,
        )

    def tokenize(self, text: str) -> list[int]:
        """Tokens of ``text`` with special tokens parsed; BOS added only when the
        model wants one and the template did not already write it."""
        if self._llm is None:
            raise RuntimeError("this ChatSession is closed")
        add_bos = self._add_bos and not (self._bos_text and text.startswith(self._bos_text))
        return [int(t) for t in self._llm.tokenize(text.encode("utf-8"), add_bos, True)]

    # -- generation ----------------------------------------------------------

    def stream(
        self,
        conversation: Sequence[Message],
        params: SamplingParams,
        *,
        stop: threading.Event | None = None,
        template_kwargs: Mapping[str, object] | None = None,
    ) -> Iterator[Event]:
        """Stream the model's reply to ``conversation``.

        Renders and checks the prompt now (raising ``GenerationError`` or
        ``ContextFullError``), then returns an iterator of ``TextDelta`` events
        followed by exactly one ``ReplyDone``.
        """
        t_start = time.perf_counter()
        tokens = self.tokenize(self.render_prompt(conversation, extra=template_kwargs))
        if len(tokens) >= self._n_ctx:
            raise ContextFullError(
                f"This conversation is longer than the model's context window "
                f"({self._n_ctx} tokens): the prompt alone is {len(tokens)} tokens. "
                "Start a new chat, shorten the messages, or load the model with a larger context.",
            )
        if self._active is not None:
            # One reply at a time: a reply abandoned half-way must not wake up
            # later and decode into a KV cache that has moved on.
            self._active.close()
        self._active = self._generate(tokens, params, stop or threading.Event(), t_start)
        return self._active

    def _generate(
        self, tokens: list[int], params: SamplingParams, stop: threading.Event, t_start: float
    ) -> Generator[Event, None, None]:
        reused = self._reuse_prefix(tokens)
        sampler = self._make_sampler(params)
        detok = Detokenizer(self._piece, strip_leading_space=self._strip_space)
        n_gen = 0
        t_first = t_end = 0.0
        try:
            prompt_done = self._eval_prompt(tokens, reused, stop)
            evaluated = self._n_past - reused
            if not prompt_done:
                reason = FinishReason.CANCELLED
            else:
                # Hot loop: locals only, no allocation that grows with the reply.
                sample = llama_cpp.llama_sampler_sample
                decode = llama_cpp.llama_decode
                is_eog = llama_cpp.llama_vocab_is_eog
                is_set = stop.is_set
                ctx, vocab, kv, n_ctx = self._ctx, self._vocab, self._kv, self._n_ctx
                batch = self._batch.batch
                b_token, b_pos = batch.token, batch.pos
                self._batch.set_batch([0], 0, False)  # one token, seq 0, logits on
                max_tokens = params.max_tokens
                watch_slow = True
                while True:
                    token = sample(sampler, ctx, -1)
                    if n_gen == 0:
                        t_first = time.perf_counter()
                    if is_eog(vocab, token):
                        reason = FinishReason.STOP
                        break
                    n_gen += 1
                    text = detok.feed(token)
                    if text:
                        yield TextDelta(text)
                    if n_gen >= max_tokens:
                        reason = FinishReason.LENGTH
                        break
                    if is_set():
                        reason = FinishReason.CANCELLED
                        break
                    n_past = self._n_past
                    if n_past >= n_ctx:
                        reason = FinishReason.CONTEXT
                        break
                    b_token[0] = token
                    b_pos[0] = n_past
                    kv[n_past] = token
                    rc = decode(ctx, batch)
                    if rc != 0 and self._decode_failed(rc, n_past + 1, stop):
                        reason = FinishReason.CANCELLED
                        break
                    self._n_past = n_past + 1
                    if watch_slow and n_gen == 2:
                        # Timed once, on the second token (the first pays warm-up).
                        watch_slow = False
                        per_token = (time.perf_counter() - t_first) / 2
                        if per_token > _SLOW_TOKEN_S:
                            self._set_abort(stop)
            tail = detok.flush()
            if tail:
                yield TextDelta(tail)
            t_end = time.perf_counter()
        finally:
            llama_cpp.llama_sampler_free(sampler)
            self._set_abort(None)
        decode_s = t_end - t_first
        stats = GenerationStats(
            prompt_tokens=len(tokens),
            completion_tokens=n_gen,
            ttft_s=(t_first - t_start) if t_first else 0.0,
            tokens_per_s=(n_gen - 1) / decode_s if n_gen > 1 and decode_s > 0 else 0.0,
            elapsed_s=t_end - t_start,
            reused_tokens=reused,
            evaluated_tokens=evaluated,
        )
        self.last_stats = stats
        self._active = None
        yield ReplyDone(reason, stats)

    def _reuse_prefix(self, tokens: list[int]) -> int:
        """Drop the KV cache after the longest prefix shared with ``tokens``; return its length.

        At least one prompt token is always left to evaluate: sampling needs the
        logits of the last prompt token, and only a decode produces them.
        """
        kv, limit = self._kv, min(self._n_past, len(tokens) - 1)
        keep = 0
        while keep < limit and kv[keep] == tokens[keep]:
            keep += 1
        mem = self._memory
        if keep > 0 and self._n_swa > 0:
            # Without a full-size SWA cache, positions older than the window are
            # gone; truncating behind them would leave holes (llama.cpp server
            # does the same check).
            pos_min = int(llama_cpp.llama_memory_seq_pos_min(mem, 0))
            if pos_min > max(0, keep - self._n_swa):
                keep = 0
        if keep == 0:
            if self._n_past:
                llama_cpp.llama_memory_clear(mem, True)
        elif keep < self._n_past and not llama_cpp.llama_memory_seq_rm(mem, 0, keep, -1):
            # Recurrent/hybrid memories cannot drop a suffix: start over.
            llama_cpp.llama_memory_clear(mem, True)
            keep = 0
        self._n_past = keep
        return keep

    def _eval_prompt(self, tokens: list[int], start: int, stop: threading.Event) -> bool:
        """Decode ``tokens[start:]`` in chunks of n_batch; False if stopped."""
        self._set_abort(stop)  # a chunk can take seconds on a big model
        try:
            for i in range(start, len(tokens), self._n_batch):
                if stop.is_set():
                    return False
                chunk = tokens[i : i + self._n_batch]
                self._kv[i : i + len(chunk)] = array("i", chunk)
                self._batch.set_batch(chunk, i, False)
                rc = llama_cpp.llama_decode(self._ctx, self._batch.batch)
                if rc != 0 and self._decode_failed(rc, i + len(chunk), stop):
                    return False
                self._n_past = i + len(chunk)
            return True
        finally:
            self._set_abort(None)

    def _decode_failed(self, rc: int, wanted: int, stop: threading.Event) -> bool:
        """Handle a non-zero ``llama_decode`` result: True means stopped, else raise."""
        # llama.cpp keeps the ubatches it finished; ask it how far it got.
        pos_max = int(llama_cpp.llama_memory_seq_pos_max(self._memory, 0))
        self._n_past = max(0, min(wanted, pos_max + 1))
        if rc == 2 and stop.is_set():
            return True
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

    def _set_abort(self, stop: threading.Event | None) -> None:
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

    def _make_sampler(self, params: SamplingParams) -> Any:
        """The sampler chain of ``Llama._init_sampler`` with every field from ``params``."""
        chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
        add = llama_cpp.llama_sampler_chain_add
        add(
            chain,
            llama_cpp.llama_sampler_init_penalties(
                self._n_vocab,
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
        add(chain, llama_cpp.llama_sampler_init_dist(self._seed(params)))
        return chain

    def _seed(self, params: SamplingParams) -> int:
        # An explicit per-reply seed wins (0 included); otherwise the load-time seed,
        # where 0 means "random" as it does for llama-cpp-python's Llama(seed=...).
        if params.seed is not None:
            return params.seed & 0xFFFFFFFF
        return self._options.seed or llama_cpp.LLAMA_DEFAULT_SEED

    # -- lifetime ------------------------------------------------------------

    def close(self) -> None:
        """Free the model and its context now rather than at garbage collection."""
        llm = getattr(self, "_llm", None)
        if llm is not None:
            if self._active is not None:
                self._active.close()
                self._active = None
            self._abort_cb = None
            llm.close()
            self._llm = None

    def __enter__(self) -> ChatSession:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def _token_text(model: Any, token: int) -> str:
    if token < 0:  # LLAMA_TOKEN_NULL: the vocabulary has no such token
        return ""
    return cast(str, model.token_get_text(token))
