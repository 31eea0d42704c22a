"""ChatSession: the one object that owns a ``llama_cpp.Llama``.

It renders the conversation with the model's chat template (``enable_thinking``
always passed explicitly), reuses the already-evaluated prefix of the context
(``engine.inference.checkpoints``: KV truncation, or recurrent-state checkpoints for hybrid
models such as Qwen3.5), and runs a lean token loop that does per token only
what ``Llama.generate`` does (sample, one-token decode) plus an O(1) incremental
detokenize and, while the model thinks, the thinking/answer split. It is not
thread-safe: one thread owns it for its whole life, and other threads only set
the ``stop`` event.
"""

from __future__ import annotations

import logging
import threading
import time
from array import array
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, cast

import llama_cpp

from engine.errors import ContextFullError
from engine.inference.chat_template import (
    IMAGE_MARKER,
    TOOLS_KEY,
    PromptBuilder,
    choose_template,
)
from engine.inference.checkpoints import (
    EvaluatedHistory,
    Media,
    checkpoint_marks,
    common_prefix,
)
from engine.inference.context import reply_budget
from engine.inference.detok import Detokenizer, piece_function
from engine.inference.devices import device_text
from engine.inference.loader import (
    install_log_bridge,
    load_llama,
    log_state,
    quantization_name,
)
from engine.inference.sampling import default_sampling, make_sampler
from engine.inference.thinking import (
    THINK_CLOSE,
    THINK_OPEN,
    ThinkingSplitter,
    prompt_opens_thinking,
)
from engine.inference.vision import (
    PreparedImage,
    Projector,
    cells,
    load_projector,
    media_runs,
    prompt_tokens,
    refuse_images,
)
from engine.types import (
    ContextUsage,
    EngineOptions,
    Event,
    FinishReason,
    GenerationStats,
    Message,
    ModelInfo,
    PromptProgress,
    ReplyDone,
    SamplingParams,
    TextDelta,
    ThinkingDelta,
    ToolSpec,
)

__all__ = ["ChatSession"]

_log = logging.getLogger(__name__)

# A one-token decode slower than this gets llama.cpp's abort callback, so Stop
# interrupts it mid-token. The callback is a Python call per graph node (~600 per
# token for SmolLM2, ~0.2 us each): about 2% on a 5 ms token, noise on a slow one.
_SLOW_TOKEN_S = 0.05
_DEFAULT_OPTIONS = EngineOptions()
# Inserted when thinking runs out of budget: the model then writes its answer.
_THINK_BUDGET_CLOSE = f"\n{THINK_CLOSE}\n\n"


@dataclass(frozen=True, slots=True, kw_only=True)
class _Prompt:
    """One turn's prompt, as ``stream`` and ``context_usage`` need it."""

    tokens: list[int]
    text: str
    in_thinking: bool  # the prompt ends inside an open thinking block
    resumed: bool  # it continues a cut-off reply that already has text
    before: tuple[Message, ...]  # the messages the checkpoint marks are about
    variables: Mapping[str, object]  # the template's variables (enable_thinking)
    images: Mapping[int, PreparedImage]  # by the position where each image's run starts
    cells: int  # context cells it takes (an image may have more embeddings than positions)


class ChatSession:
    """A loaded model and its context window, ready to stream replies."""

    info: ModelInfo

    def __init__(
        self,
        model_path: str | Path,
        options: EngineOptions = _DEFAULT_OPTIONS,
        *,
        sampling_presets: Mapping[str, Mapping[str, float]] | None = None,
        projector: str | Path | None = None,
    ) -> None:
        """``sampling_presets``: the sampler settings the model's makers publish (the
        catalog has them) by mode, "thinking" and "non_thinking" or "default"; they
        win over what the file's metadata and architecture suggest. ``projector``:
        the model's vision file (``mmproj``), which lets it see images."""
        path = Path(model_path)
        install_log_bridge()  # (load_llama checks the file before llama.cpp sees it)
        self._options = options
        self._sampling_presets = dict(sampling_presets or {})
        self._llm: Any = load_llama(path, options)
        self._active: Generator[Event, None, None] | None = None
        self._prepared: tuple[tuple[object, ...], _Prompt] | None = None
        self._projector: Projector | None = None
        # The last reply's prompt text plus what it generated, and their tokens.
        self._last_reply: tuple[str, list[int]] | None = None
        try:
            self._setup(path)
            if projector is not None:
                self._projector = load_projector(
                    Path(projector), self._llm, max_tokens=options.image_max_tokens,
                    use_gpu=options.n_gpu_layers != 0,
                )  # fmt: skip
                self._prompts.image_marker = IMAGE_MARKER
                self.info = replace(self.info, vision=True)
        except BaseException:
            self._llm.close()
            raise
        self.last_stats: GenerationStats | None = None

    def _setup(self, path: Path) -> None:
        llm = self._llm
        model = llm._model
        self._path = path
        self._ctx = llm._ctx.ctx
        self._vocab = model.vocab
        self._batch = llm._batch  # reused for every decode: no allocation per token
        self._n_ctx = int(llm.n_ctx())
        self._n_vocab = int(llm.n_vocab())
        self._n_params = int(model.n_params())
        recurrent = bool(
            llama_cpp.llama_model_is_recurrent(model.model)
            or llama_cpp.llama_model_is_hybrid(model.model)
        )
        self._history = EvaluatedHistory(
            ctx=self._ctx,
            batch=self._batch,
            n_batch=int(llm.n_batch),
            n_ctx=self._n_ctx,
            n_swa=int(llama_cpp.llama_model_n_swa(model.model)),
            recurrent=recurrent,
            checkpoint_bytes=self._options.checkpoint_mib << 20,
        )
        self.checkpoints = self._history.checkpoints  # None unless hybrid/recurrent

        md: dict[str, str] = dict(llm.metadata)
        self._metadata = md
        bos_id = int(model.token_bos())
        architecture = md.get("general.architecture", "unknown")
        gguf_template = md.get("tokenizer.chat_template")
        template = choose_template(
            gguf_template, architecture, tokenizer_pre=md.get("tokenizer.ggml.pre", "")
        )
        self._prompts = prompts = PromptBuilder(
            template,
            bos_token=_token_text(model, bos_id),
            eos_token=_token_text(model, int(model.token_eos())),
            add_bos=bool(llama_cpp.llama_vocab_get_add_bos(self._vocab)) and bos_id >= 0,
            tokenize=lambda text, bos: self._tokenize(text, add_bos=bos),
        )
        # SentencePiece tokenizers with add_space_prefix put a space before the
        # first word of any text, including a reply; llama.cpp defaults it to on.
        is_spm = int(llama_cpp.llama_vocab_type(self._vocab)) == llama_cpp.LLAMA_VOCAB_TYPE_SPM
        self._strip_space = is_spm and md.get("tokenizer.ggml.add_space_prefix", "true") == "true"
        self._piece = piece_function(self._vocab)
        self._think_open = prompts.single_token(THINK_OPEN)
        self._think_close = prompts.single_token(THINK_CLOSE)
        self._think_budget_close = self._tokenize(_THINK_BUDGET_CLOSE, add_bos=False)
        self.info = info = ModelInfo(
            path=str(path),
            name=md.get("general.name") or path.stem,
            architecture=architecture,
            quantization=quantization_name(md.get("general.file_type")),
            file_size=path.stat().st_size,
            n_ctx=self._n_ctx,
            n_ctx_train=int(model.n_ctx_train()),
            has_chat_template=bool(gguf_template and gguf_template.strip()),
            template_source=template.source,
            supports_thinking=prompts.supports_thinking,
            thinking_default=prompts.thinking_default,
            extra={
                "description": model.desc(),
                "parameters": str(self._n_params),
                "threads": str(llm.n_threads),
                "memory": "hybrid/recurrent" if recurrent else "kv",
                # Where it runs, as llama.cpp said while loading it.
                "device": device_text(log_state.offloaded),
                "gpu_layers": str(log_state.offloaded[0] if log_state.offloaded else 0),
            },
        )
        _log.info(
            "loaded %s (n_ctx=%d, template %s): %s",
            info.name,
            self._n_ctx,
            info.template_source,
            info.extra,
        )

    # -- prompt --------------------------------------------------------------

    def render_prompt(
        self,
        conversation: Sequence[Message],
        *,
        thinking: bool | None = None,
        extra: Mapping[str, object] | None = None,
    ) -> str:
        """The conversation as the model sees it, ending with the assistant cue."""
        return self._prompts.render(conversation, self._prompts.variables(thinking, extra))

    def render_continuation(
        self, conversation: Sequence[Message], *, thinking: bool | None = None
    ) -> str:
        """The prompt that continues the last message, a cut-off reply (left open)."""
        return self._prompts.render_continuation(conversation, self._prompts.variables(thinking))[0]

    def tokenize(self, text: str) -> list[int]:
        """Tokens of ``text`` with special tokens parsed; BOS added only when the
        model wants one and the template did not already write it."""
        return self._prompts.tokenize(text)

    @property
    def projector(self) -> Projector | None:
        """The vision projector (None: the model cannot see)."""
        return self._projector

    def _tokens(
        self, text: str, conversation: Sequence[Message]
    ) -> tuple[list[int], dict[int, PreparedImage]]:
        """A rendered prompt's tokens, and its images by where their runs start."""
        rest = lambda t: self._tokenize(t, add_bos=False)  # noqa: E731
        return prompt_tokens(text, conversation, self._projector, self.tokenize, rest)

    def _conversation_tokens(
        self, conversation: Sequence[Message], variables: Mapping[str, object]
    ) -> tuple[list[int], dict[int, PreparedImage]]:
        return self._tokens(self._prompts.render(conversation, variables), conversation)

    def default_sampling(self, thinking: bool | None = None) -> SamplingParams:
        """This model's sampling defaults for a chat with thinking on or off
        (``None``: the model's default); see ``engine.inference.sampling``."""
        on = self._thinking_on(thinking)
        presets = self._sampling_presets
        preset = presets.get("thinking" if on else "non_thinking") or presets.get("default")
        return default_sampling(
            architecture=self.info.architecture,
            metadata=self._metadata,
            n_params=self._n_params,
            thinking=on,
            catalog=preset,
        )

    def context_usage(
        self,
        conversation: Sequence[Message],
        params: SamplingParams,
        *,
        thinking: bool | None = None,
        continue_reply: bool = False,
        tools: Sequence[ToolSpec] = (),
    ) -> ContextUsage:
        """How much of the context window the prompt plus the reply budget needs
        (``continue_reply``: the prompt that continues the last, partial reply)."""
        prompt = self._prepare(conversation, thinking, continue_reply, tools)
        thinks = prompt.in_thinking or (self.info.supports_thinking and self._thinking_on(thinking))
        budget = reply_budget(params, thinking=thinks, close_tokens=len(self._think_budget_close))
        return ContextUsage(prompt.cells, budget, self._n_ctx)

    def _variables(self, thinking: bool | None, tools: Sequence[ToolSpec]) -> dict[str, object]:
        return self._prompts.variables(thinking, {TOOLS_KEY: tuple(tools)} if tools else None)

    def _spliced(self, text: str) -> list[int] | None:
        """The tokens of ``text`` when it extends the last reply (the next round of a
        reply that called tools): the tokens the model generated, as it generated
        them, then the new text's. Re-tokenizing the whole text can split the
        generated part differently, and a hybrid model's state cannot go back to
        where the two part: the round would re-read the reply from a checkpoint."""
        last = self._last_reply
        if last is None or not last[0] or not text.startswith(last[0]):
            return None
        return last[1] + self._tokenize(text[len(last[0]) :], add_bos=False)

    def _remember_reply(self, prompt: _Prompt, n_prompt: int) -> None:
        generated = [int(t) for t in self._history.tokens[n_prompt : self._history.n_past]]
        try:
            text = self._llm.detokenize(generated, special=True).decode("utf-8")
        except UnicodeDecodeError:  # cut inside a character: no splice next time
            self._last_reply = None
            return
        self._last_reply = (prompt.text + text, [*prompt.tokens, *generated])

    def _prepare(
        self,
        conversation: Sequence[Message],
        thinking: bool | None,
        continue_reply: bool,
        tools: Sequence[ToolSpec] = (),
    ) -> _Prompt:
        """The prompt of this turn, rendered and tokenized once: the context check
        and the reply that follows it (the worker's order) share it."""
        key = (tuple(conversation), thinking, continue_reply, tuple(tools))
        if self._prepared is not None and self._prepared[0] == key:
            return self._prepared[1]
        prompts = self._prompts
        variables = self._variables(thinking, tools)
        resumed = False
        if self._projector is None and conversation and conversation[-1].images:
            raise refuse_images(self.info.name)
        if continue_reply and conversation and conversation[-1].role == "assistant":
            text, in_thinking = prompts.render_continuation(conversation, variables)
            resumed = bool(conversation[-1].content or conversation[-1].thinking.strip())
            conversation = conversation[:-1]  # what the checkpoint marks are about
        else:
            text = prompts.render(conversation, variables)
            in_thinking = prompt_opens_thinking(text)
        tokens, images = self._tokens(text, conversation)
        if not images:  # (a reply that called tools: its own tokens, as generated)
            tokens = self._spliced(text) or tokens
        prompt = _Prompt(
            tokens=tokens,
            text=text,
            in_thinking=in_thinking,
            resumed=resumed,
            before=tuple(conversation),
            variables=variables,
            images=images,
            cells=cells(len(tokens), images),
        )
        self._prepared = (key, prompt)
        return prompt

    # -- generation ----------------------------------------------------------

    def stream(
        self,
        conversation: Sequence[Message],
        params: SamplingParams,
        *,
        stop: threading.Event | None = None,
        thinking: bool | None = None,
        continue_reply: bool = False,
        cache_key: object = None,
        tools: Sequence[ToolSpec] = (),
    ) -> Iterator[Event]:
        """Stream the model's reply to ``conversation``.

        ``thinking`` switches the template's ``enable_thinking`` (None: the
        model's default). ``continue_reply``: the last message is a reply that was
        cut off (stopped, or at the length limit); the model carries on writing it
        and the events are its continuation only. ``cache_key`` names the
        conversation (e.g. its id): when the key changes, the state of the one
        before is kept (within the checkpoint memory) so that coming back to it
        reads only what is new. Renders and checks the prompt now (raising
        ``GenerationError`` or ``ContextFullError``), then returns an iterator of
        ``ThinkingDelta``/``TextDelta`` events followed by exactly one ``ReplyDone``.
        ``tools``: what the model may call, rendered into the prompt; the calls come
        out as text (``engine.tools.loop`` reads them).
        """
        t_start = time.perf_counter()
        prompt = self._prepare(conversation, thinking, continue_reply, tools)
        tokens = prompt.tokens
        if prompt.cells >= self._n_ctx:
            raise ContextFullError(
                f"This conversation is longer than the model's context window "
                f"({self._n_ctx} tokens): the prompt alone is {prompt.cells} tokens. "
                "Start a new chat, drop the oldest messages, or load the model with a "
                "larger context.",
            )
        marks: list[int] = []
        if self.checkpoints is not None:  # where later prompts will part from this one
            variables = prompt.variables
            marks = checkpoint_marks(
                prompt.before, tokens, lambda c: self._conversation_tokens(c, variables)[0]
            )
        if self._active is not None:
            # One reply at a time: a reply abandoned half-way must not wake up
            # later and decode into a context that has moved on.
            self._active.close()
        split = ThinkingSplitter(
            start_in_thinking=prompt.in_thinking,
            open_id=self._think_open,
            close_id=self._think_close,
            resumed=prompt.resumed,
        )
        self._active = self._generate(
            prompt,
            params,
            stop or threading.Event(),
            t_start,
            marks,
            split,
            resumed=prompt.resumed,
            cache_key=cache_key,
            images=prompt.images,
        )
        return self._active

    def warm(
        self,
        conversation: Sequence[Message],
        *,
        thinking: bool | None = None,
        stop: threading.Event | None = None,
        cache_key: object = None,
        on_progress: Callable[[int, int], None] | None = None,
        tools: Sequence[ToolSpec] = (),
    ) -> tuple[int, int]:
        """Read ``conversation`` into the context ahead of its next turn (after a
        model switch, say), so that turn evaluates only the new message.

        What is read is exactly what the next turn's prompt will start with: the
        common prefix of the conversation rendered with two different stand-in
        questions (the template may re-render earlier turns, e.g. drop thinking).
        A checkpoint is kept at its end on a hybrid model. Returns (reused,
        evaluated) token counts; stops between batches when ``stop`` is set.
        ``on_progress(done, total)`` reports the tokens evaluated so far.
        """
        variables = self._variables(thinking, tools)
        base = list(conversation)
        if base and base[-1].role == "user":  # unanswered: its next turn replaces it
            base = base[:-1]
        first, images = self._conversation_tokens([*base, Message("user", "\x07")], variables)
        one = array("i", first)
        two = array("i", self._conversation_tokens([*base, Message("user", "\x08")], variables)[0])
        n = common_prefix(one, two, min(len(one), len(two)))
        if n < 2 or n >= self._n_ctx:
            return 0, 0
        if self._active is not None:  # (one reply at a time, as in stream())
            self._active.close()
            self._active = None
        prefix = one[:n]
        hist = self._history
        hist.select(cache_key, prefix)
        reused = hist.reuse(prefix)
        media = self._media({p: i for p, i in images.items() if p < n})
        stop = stop or threading.Event()
        if hist.evaluate(prefix, reused, stop, on_progress=on_progress, media=media):
            hist.checkpoint_here()
        return reused, max(0, hist.n_past - reused)

    def _generate(
        self,
        prompt_: _Prompt,
        params: SamplingParams,
        stop: threading.Event,
        t_start: float,
        marks: Sequence[int],
        split: ThinkingSplitter,
        *,
        resumed: bool = False,
        cache_key: object = None,
        images: Mapping[int, PreparedImage] | None = None,
    ) -> Generator[Event, None, None]:
        hist = self._history
        tokens = prompt_.tokens
        self._last_reply = None
        prompt = array("i", tokens)
        hist.select(cache_key, prompt)
        reused = hist.reuse(prompt)
        images = {p: i for p, i in (images or {}).items() if p >= reused}
        projector = self._projector
        if projector is not None:  # encoded before the prompt is read: progress, Stop
            new = [i for i in images.values() if not projector.has_embeddings(i)]
            for n, image in enumerate(new):
                yield PromptProgress(n, len(new))
                if projector.embeddings(image, stop) is None:
                    break
        sampler = make_sampler(params, n_vocab=self._n_vocab, seed=self._options.seed)
        # A continued reply goes on mid-text: its first space is a real one.
        detok = Detokenizer(self._piece, strip_leading_space=self._strip_space and not resumed)
        n_gen = n_think = n_answer = 0
        t_first = t_end = t_think = think_s = 0.0
        try:
            media = self._media(images)
            prompt_done = hist.evaluate(tokens, reused, stop, checkpoint_at=marks, media=media)
            evaluated = max(0, hist.n_past - reused)
            if not prompt_done:
                reason = FinishReason.CANCELLED
            else:
                # Hot loop: locals only, no allocation that grows with the reply.
                sample = llama_cpp.llama_sampler_sample
                decode = llama_cpp.llama_decode
                is_eog = llama_cpp.llama_vocab_is_eog
                is_set = stop.is_set
                ctx, vocab, kv, n_ctx = self._ctx, self._vocab, hist.tokens, self._n_ctx
                batch = self._batch.batch
                b_token, b_pos = batch.token, batch.pos
                self._batch.set_batch([0], 0, False)  # one token, seq 0, logits on
                max_answer, max_think = params.max_tokens, params.max_thinking_tokens
                feed = split.feed
                splitting = True  # False once the answer has begun: text goes straight out
                watch_slow = slow = True
                while True:
                    if splitting and n_think >= max_think and split.thinking:
                        # Out of thinking budget: close the block, go on with the answer.
                        thought = split.feed(-1, detok.flush())[0] + split.close_thinking()
                        if thought:
                            yield ThinkingDelta(thought)
                        think_s = time.perf_counter() - (t_think or t_start)
                        if hist.n_past + len(self._think_budget_close) >= n_ctx:
                            reason = FinishReason.CONTEXT
                            break
                        if not hist.extend(self._think_budget_close, stop):
                            reason = FinishReason.CANCELLED
                            break
                        self._batch.set_batch([0], 0, False)
                        if not watch_slow and slow:
                            hist.set_abort(stop)  # extend() disarmed it
                    token = sample(sampler, ctx, -1)
                    if n_gen == 0:
                        t_first = time.perf_counter()
                    if is_eog(vocab, token):
                        reason = FinishReason.STOP
                        break
                    n_gen += 1
                    text = detok.feed(token)
                    if splitting:
                        was_thinking = split.thinking
                        thought, answer = feed(token, text)
                        if thought:
                            yield ThinkingDelta(thought)
                        if answer:
                            yield TextDelta(answer)
                        if was_thinking or split.thinking:
                            n_think += 1
                            if not t_think:
                                t_think = time.perf_counter()
                            if not split.thinking:
                                think_s = time.perf_counter() - t_think
                        else:
                            n_answer += 1
                        splitting = not split.done
                    else:
                        n_answer += 1
                        if text:
                            yield TextDelta(text)
                    if n_answer >= max_answer:
                        reason = FinishReason.LENGTH
                        break
                    if is_set():
                        reason = FinishReason.CANCELLED
                        break
                    n_past = hist.n_past
                    if n_past >= n_ctx:
                        reason = FinishReason.CONTEXT
                        break
                    b_token[0] = token
                    b_pos[0] = n_past
                    kv[n_past] = token
                    rc = decode(ctx, batch)
                    if rc != 0 and hist.decode_failed(rc, n_past, 1, stop):
                        reason = FinishReason.CANCELLED
                        break
                    hist.n_past = n_past + 1
                    if watch_slow and n_gen == 2:
                        # Timed once, on the second token (the first pays warm-up).
                        watch_slow = False
                        per_token = (time.perf_counter() - t_first) / 2
                        slow = per_token > _SLOW_TOKEN_S
                        if slow:
                            hist.set_abort(stop)
            tail = detok.flush()
            thought, answer = split.feed(-1, tail) if tail else ("", "")
            held_thought, held_answer = split.flush()
            if split.thinking and t_think and not think_s:
                think_s = time.perf_counter() - t_think
            if thought + held_thought:
                yield ThinkingDelta(thought + held_thought)
            if answer + held_answer:
                yield TextDelta(answer + held_answer)
            t_end = time.perf_counter()
        finally:
            llama_cpp.llama_sampler_free(sampler)
            hist.set_abort(None)
        if reason is FinishReason.STOP and hist.n_past > len(tokens):
            self._remember_reply(prompt_, len(tokens))
        decode_s = t_end - t_first
        stats = GenerationStats(
            prompt_tokens=len(tokens),
            completion_tokens=n_gen,
            ttft_s=(t_first - t_start) if t_first else 0.0,
            tokens_per_s=(n_gen - 1) / decode_s if n_gen > 1 and decode_s > 0 else 0.0,
            elapsed_s=t_end - t_start,
            reused_tokens=reused,
            evaluated_tokens=evaluated,
            thinking_tokens=n_think,
            thinking_s=think_s,
            context_tokens=hist.n_past,
        )
        self.last_stats = stats
        self._active = None
        yield ReplyDone(reason, stats)

    # -- helpers -------------------------------------------------------------

    def _media(self, images: Mapping[int, PreparedImage]) -> dict[int, Media]:
        return media_runs(self._projector, self._ctx, images, int(self._llm.n_batch))

    def _thinking_on(self, thinking: bool | None) -> bool:
        return self.info.thinking_default if thinking is None else thinking

    def _tokenize(self, text: str, *, add_bos: bool) -> list[int]:
        if self._llm is None:
            raise RuntimeError("this ChatSession is closed")
        return [int(t) for t in self._llm.tokenize(text.encode("utf-8"), add_bos, True)]

    # -- lifetime ------------------------------------------------------------

    def close(self) -> None:
        """Free the model and its context now rather than at garbage collection."""
        llm = getattr(self, "_llm", None)
        if llm is not None:
            if self._active is not None:
                self._active.close()
                self._active = None
            self._history.set_abort(None)
            if self._projector is not None:
                self._projector.close()
                self._projector = None
            if self._history.snapshots is not None:
                self._history.snapshots.clear()  # the checkpoints too, on a hybrid model
            llm.close()
            self._llm = None
            self._prepared = None

    def __enter__(self) -> ChatSession:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def _token_text(model: Any, token: int) -> str:
    if token < 0:  # LLAMA_TOKEN_NULL: the vocabulary has no such token
        return ""
    return cast(str, model.token_get_text(token))
