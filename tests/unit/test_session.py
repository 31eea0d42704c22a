"""ChatSession against real llama.cpp and real models."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import llama_cpp
import pytest

from engine.errors import ContextFullError, ModelLoadError
from engine.gguf.validate import DamagedModelFile, validate_gguf
from engine.inference import session as session_module
from engine.inference.loader import (
    _cpu_list,
    _performance_cores,
    gguf_context_length,
    physical_cores,
    quantization_name,
    recent_problems,
)
from engine.inference.local import LocalBackend
from engine.inference.session import ChatSession
from engine.types import (
    EngineOptions,
    Event,
    FinishReason,
    Message,
    ReplyDone,
    SamplingParams,
    TextDelta,
    Turn,
)

pytestmark = pytest.mark.model

HELLO = [Message("user", "Name three colors of the rainbow.")]
GREEDY = SamplingParams(max_tokens=40, temperature=0.0)


def _never_called(*args: object, **kwargs: object) -> None:
    raise AssertionError("llama.cpp was handed a file the validator refuses")


def collect(events: Iterator[Event]) -> tuple[list[str], ReplyDone]:
    """Deltas and the final event; fails unless exactly one ReplyDone comes last."""
    items = list(events)
    assert items, "no events at all"
    *deltas, done = items
    assert isinstance(done, ReplyDone)
    assert all(isinstance(d, TextDelta) for d in deltas)
    return [d.text for d in deltas if isinstance(d, TextDelta)], done


def prompt_evals(session: ChatSession) -> int:
    """llama.cpp's own count of tokens decoded in batches (prompt processing)."""
    return int(llama_cpp.llama_perf_context(session._ctx).n_p_eval)


class CountdownEvent(threading.Event):
    """A stop event that turns itself on at its n-th check: a Stop press at an
    exact point of the engine's work, without timing."""

    def __init__(self, checks: int) -> None:
        super().__init__()
        self.remaining = checks

    def is_set(self) -> bool:
        self.remaining -= 1
        if self.remaining <= 0:
            self.set()
        return super().is_set()


def reply_text(session: ChatSession, chat: list[Message] = HELLO) -> str:
    deltas, _ = collect(session.stream(chat, GREEDY))
    return "".join(deltas)


@pytest.fixture(scope="module")
def reference_reply(smol_session: ChatSession) -> str:
    """The greedy reply to HELLO: any KV-cache mix-up would change it."""
    text = reply_text(smol_session)
    assert text.strip()
    return text


@pytest.fixture(scope="module")
def small_ctx_session(starter_model_path: Path) -> Iterator[ChatSession]:
    session = ChatSession(starter_model_path, EngineOptions(n_ctx=256, n_batch=64, n_ubatch=64))
    yield session
    session.close()


class TestLoad:
    def test_model_info(self, smol_session: ChatSession, starter_model_path: Path) -> None:
        info = smol_session.info
        assert info.architecture == "llama"
        assert info.quantization == "Q4_1"
        assert info.n_ctx == 2048
        assert info.n_ctx_train == 8192
        assert info.file_size == starter_model_path.stat().st_size
        assert info.has_chat_template and info.template_source == "gguf"
        assert info.name

    def test_gemma_info(self, gemma_session: ChatSession) -> None:
        info = gemma_session.info
        assert (info.architecture, info.quantization) == ("gemma3", "Q4_K_M")
        assert not info.has_chat_template
        assert info.template_source == "fallback:gemma"

    def test_not_a_gguf_file(self, tmp_path: Path) -> None:
        bogus = tmp_path / "model.gguf"
        bogus.write_text("<html>404 Not Found</html>")
        with pytest.raises(ModelLoadError) as info:
            ChatSession(bogus)
        assert str(info.value) == (
            "model.gguf is not a GGUF model file: Hearth runs .gguf files, such as the ones on "
            "Hugging Face marked GGUF."
        )

    def test_truncated_file_gets_the_validators_sentence(
        self, tmp_path: Path, starter_model_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        cut = tmp_path / "cut.gguf"
        with starter_model_path.open("rb") as f:
            cut.write_bytes(f.read(4 << 20))  # header and metadata intact, tensors cut
        monkeypatch.setattr(llama_cpp, "Llama", _never_called)
        with pytest.raises(ModelLoadError) as info:
            ChatSession(cut)
        # The same sentence the Models page and `hearth import` give for this file.
        with pytest.raises(DamagedModelFile) as validated:
            validate_gguf(cut)
        assert str(info.value) == str(validated.value)
        assert str(info.value).startswith("cut.gguf is damaged or incomplete")
        assert "tensors need" in info.value.detail

    @pytest.mark.parametrize(
        ("arch", "sentence"),
        [
            ("bert", "embed.gguf is an embedding model"),
            ("no-such-arch", "embed.gguf is a model of type 'no-such-arch'"),
        ],
    )
    def test_an_architecture_hearth_cannot_chat_with_never_reaches_llama_cpp(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, arch: str, sentence: str
    ) -> None:
        from tests.unit.test_library import write_gguf

        path = write_gguf(tmp_path / "embed.gguf", arch)
        monkeypatch.setattr(llama_cpp, "Llama", _never_called)
        with pytest.raises(ModelLoadError) as info:
            ChatSession(path)
        assert str(info.value).startswith(sentence)

    @pytest.mark.parametrize(
        ("file_type", "name"),
        [("15", "Q4_K_M"), ("3", "Q4_1"), ("0", "F32"), ("999", "type 999"), (None, "unknown")],
    )
    def test_quantization_names(self, file_type: str | None, name: str) -> None:
        assert quantization_name(file_type) == name

    def test_missing_file(self, tmp_path: Path) -> None:
        with pytest.raises(ModelLoadError, match="does not exist"):
            ChatSession(tmp_path / "nope.gguf")

    def test_close_is_idempotent_and_final(self, starter_model_path: Path) -> None:
        session = ChatSession(starter_model_path, EngineOptions(n_ctx=256))
        session.close()
        session.close()
        with pytest.raises(RuntimeError, match="closed"):
            session.stream(HELLO, GREEDY)


class TestStream:
    def test_reply_streams_deltas_then_one_done(self, smol_session: ChatSession) -> None:
        deltas, done = collect(smol_session.stream(HELLO, GREEDY))
        assert len(deltas) >= 3
        assert "".join(deltas).strip()
        assert done.reason in (FinishReason.STOP, FinishReason.LENGTH)
        stats = done.stats
        assert 0 < stats.completion_tokens <= GREEDY.max_tokens
        assert stats.prompt_tokens == len(smol_session.tokenize(smol_session.render_prompt(HELLO)))
        assert stats.tokens_per_s > 0 and 0 < stats.ttft_s <= stats.elapsed_s
        assert smol_session.last_stats == stats

    def test_greedy_is_deterministic(self, smol_session: ChatSession) -> None:
        first, _ = collect(smol_session.stream(HELLO, GREEDY))
        second, _ = collect(smol_session.stream(HELLO, GREEDY))
        assert "".join(first) == "".join(second)

    def test_seed_makes_sampling_repeatable(self, smol_session: ChatSession) -> None:
        params = SamplingParams(max_tokens=24, temperature=1.0, top_p=0.95, top_k=0, seed=1234)
        first, _ = collect(smol_session.stream(HELLO, params))
        second, _ = collect(smol_session.stream(HELLO, params))
        assert "".join(first) == "".join(second)

    def test_max_tokens_gives_length(self, smol_session: ChatSession) -> None:
        params = SamplingParams(max_tokens=3, temperature=0.0)
        _, done = collect(smol_session.stream(HELLO, params))
        assert done.reason is FinishReason.LENGTH
        assert done.stats.completion_tokens == 3

    def test_stop_after_first_delta_cancels_and_keeps_text(self, smol_session: ChatSession) -> None:
        greedy = SamplingParams(max_tokens=200, temperature=0.0)
        # How many tokens the first piece of text takes (a token can hold back
        # text, e.g. a leading space): the greedy reply cut at 1, 2, 3 tokens.
        upto = next(
            n
            for n in (1, 2, 3)
            if collect(smol_session.stream(HELLO, replace(greedy, max_tokens=n)))[0]
        )
        stop = threading.Event()
        events = smol_session.stream(HELLO, greedy, stop=stop)
        first = next(events)
        assert isinstance(first, TextDelta) and first.text
        stop.set()
        *deltas, done = list(events)
        assert isinstance(done, ReplyDone)
        assert done.reason is FinishReason.CANCELLED
        assert all(isinstance(d, TextDelta) for d in deltas)
        assert len(deltas) <= 1  # at most a held-back character, flushed
        # Not one token is generated after Stop (how long that takes is measured
        # in bench/, not asserted here).
        assert done.stats.completion_tokens == upto

    def test_stop_before_start_evaluates_nothing(self, smol_session: ChatSession) -> None:
        stop = threading.Event()
        stop.set()
        deltas, done = collect(smol_session.stream(HELLO, GREEDY, stop=stop))
        assert deltas == []
        assert done.reason is FinishReason.CANCELLED
        assert done.stats.completion_tokens == 0

    def test_stop_inside_a_prompt_batch_aborts_llama_decode(
        self, smol_session: ChatSession, reference_reply: str, caplog: pytest.LogCaptureFixture
    ) -> None:
        long_chat = [Message("user", "Tell me about boats. " * 60)]  # ~360 tokens, one batch
        stop = CountdownEvent(checks=50)  # 1 check before the batch, then llama.cpp's
        problems = recent_problems()
        # On a thread of its own, as in the app (the log bridge's state is per thread).
        with caplog.at_level(logging.DEBUG, logger="engine.llama_cpp"), ThreadPoolExecutor(1) as ex:
            deltas, done = ex.submit(
                lambda: collect(smol_session.stream(long_chat, GREEDY, stop=stop))
            ).result()
        assert (deltas, done.reason) == ([], FinishReason.CANCELLED)
        assert stop.remaining <= 0  # the abort callback was consulted mid-decode
        # llama.cpp reports the aborted decode as a failure; the bridge knows it was
        # that thread's Stop, so the log says so and keeps it out of the errors.
        bridged = [r for r in caplog.records if r.name == "engine.llama_cpp"]
        assert any(r.getMessage().endswith("(Stop)") for r in bridged)
        assert not [r for r in bridged if r.levelno >= logging.WARNING]
        assert recent_problems() == problems
        # The session is still consistent: the next reply reuses only what
        # llama.cpp really kept, and comes out as usual.
        assert reply_text(smol_session) == reference_reply

    def test_stop_inside_a_slow_token_aborts_llama_decode(
        self, smol_session: ChatSession, reference_reply: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # Pretend every token is slow, so the abort callback is armed from token 3 on.
        monkeypatch.setattr(session_module, "_SLOW_TOKEN_S", 0.0)
        stop = CountdownEvent(checks=3000)  # the prompt and two tokens take fewer checks
        _, done = collect(smol_session.stream(HELLO, SamplingParams(max_tokens=200), stop=stop))
        assert done.reason is FinishReason.CANCELLED
        assert 3 <= done.stats.completion_tokens < 20
        assert reply_text(smol_session) == reference_reply

    def test_a_new_reply_closes_an_abandoned_one(
        self, smol_session: ChatSession, reference_reply: str
    ) -> None:
        abandoned = smol_session.stream(HELLO, SamplingParams(max_tokens=200))
        assert isinstance(next(abandoned), TextDelta)
        assert reply_text(smol_session) == reference_reply
        with pytest.raises(StopIteration):
            next(abandoned)

    def test_second_turn_reuses_the_prefix(self, smol_session: ChatSession) -> None:
        deltas, first = collect(smol_session.stream(HELLO, GREEDY))
        chat = [*HELLO, Message("assistant", "".join(deltas)), Message("user", "And two more?")]
        before = prompt_evals(smol_session)
        _, second = collect(smol_session.stream(chat, GREEDY))
        stats = second.stats
        assert stats.reused_tokens >= first.stats.prompt_tokens
        assert stats.evaluated_tokens == stats.prompt_tokens - stats.reused_tokens
        assert prompt_evals(smol_session) - before == stats.evaluated_tokens

    def test_a_b_a_reads_only_what_is_new_in_a(self, starter_model_path: Path) -> None:
        with ChatSession(starter_model_path, EngineOptions(n_ctx=2048)) as s:
            deltas, first = collect(s.stream(HELLO, GREEDY, cache_key="A"))
            other = [Message("user", "Write a haiku about the winter mountains.")]
            _, b = collect(s.stream(other, GREEDY, cache_key="B"))
            assert b.stats.reused_tokens < first.stats.prompt_tokens  # A's KV was replaced
            chat = [*HELLO, Message("assistant", "".join(deltas)), Message("user", "And two more?")]
            before = prompt_evals(s)
            _, back = collect(s.stream(chat, GREEDY, cache_key="A"))
            assert back.stats.reused_tokens >= first.stats.prompt_tokens  # A's snapshot
            assert prompt_evals(s) - before == back.stats.evaluated_tokens
            snapshots = s._history.snapshots
            assert snapshots is not None and snapshots.snapshots == 1  # B's, now
            assert snapshots.bytes_used <= snapshots.budget_bytes
            # The restored cache is A's own: the same greedy reply as without B.
            alone, _ = collect(smol_session_reply(starter_model_path, chat))
            text, _ = collect(s.stream(chat, GREEDY, cache_key="A"))
            assert "".join(text) == "".join(alone)

    def test_prompt_longer_than_context(self, smol_session: ChatSession) -> None:
        huge = [Message("user", "words " * 3000)]
        with pytest.raises(ContextFullError) as info:
            smol_session.stream(huge, GREEDY)
        assert str(info.value).startswith(
            "This conversation is longer than the model's context window (2048 tokens)"
        )

    def test_context_fills_up_mid_reply(self, small_ctx_session: ChatSession) -> None:
        chat = [Message("user", "Count from one to one hundred in words. " * 16)]
        prompt_tokens = len(small_ctx_session.tokenize(small_ctx_session.render_prompt(chat)))
        assert 150 < prompt_tokens < 250  # several prompt batches of 64
        params = SamplingParams(max_tokens=500, temperature=0.0, repeat_penalty=1.0)
        _, done = collect(small_ctx_session.stream(chat, params))
        if done.reason is FinishReason.STOP:  # the model ended before the window did
            pytest.fail(f"reply ended after {done.stats.completion_tokens} tokens; lengthen it")
        assert done.reason is FinishReason.CONTEXT
        assert done.stats.completion_tokens == 256 - prompt_tokens + 1

    def test_gemma_base_model_produces_text(self, gemma_session: ChatSession) -> None:
        chat = [Message("system", "Answer in English."), Message("user", "What is the sun?")]
        deltas, done = collect(gemma_session.stream(chat, SamplingParams(max_tokens=16)))
        assert "".join(deltas).strip()
        assert done.stats.completion_tokens > 0
        assert done.stats.prompt_tokens == len(
            gemma_session.tokenize(gemma_session.render_prompt(chat))
        )


class TestOptions:
    def test_n_ctx_is_clamped_to_the_training_context(self, starter_model_path: Path) -> None:
        with ChatSession(starter_model_path, EngineOptions(n_ctx=16384)) as session:
            assert session.info.n_ctx == session.info.n_ctx_train == 8192

    def test_context_length_read_from_the_gguf_header(
        self, starter_model_path: Path, gemma_model_path: Path, tmp_path: Path
    ) -> None:
        assert gguf_context_length(starter_model_path) == 8192
        assert gguf_context_length(gemma_model_path) == 32768
        junk = tmp_path / "junk.gguf"
        junk.write_bytes(b"GGUF" + bytes(10))
        assert gguf_context_length(junk) is None
        assert gguf_context_length(tmp_path / "missing.gguf") is None

    def test_quantized_kv_cache_with_flash_attention(self, starter_model_path: Path) -> None:
        options = EngineOptions(n_ctx=512, kv_cache_type="q8_0", flash_attn=True)
        with ChatSession(starter_model_path, options) as session:
            deltas, done = collect(session.stream(HELLO, GREEDY))
            assert "".join(deltas).strip() and done.stats.completion_tokens > 0

    @pytest.mark.parametrize(
        ("kwargs", "message"),
        [
            ({"kv_cache_type": "q8_0"}, "needs flash_attn"),
            ({"kv_cache_type": "q4_0", "flash_attn": True}, "f16 or q8_0"),
            ({"checkpoint_mib": -1}, "cannot be negative"),
            ({"n_ctx": 128}, "n_ctx must be"),
            ({"n_batch": 64, "n_ubatch": 128}, "n_ubatch"),
        ],
    )
    def test_invalid_options(self, kwargs: dict[str, object], message: str) -> None:
        with pytest.raises(ValueError, match=message):
            EngineOptions(**kwargs)  # type: ignore[arg-type]

    def test_max_thinking_tokens_validated(self) -> None:
        with pytest.raises(ValueError, match="max_thinking_tokens"):
            SamplingParams(max_thinking_tokens=-1)

    def test_attention_only_model_has_no_checkpoints(self, smol_session: ChatSession) -> None:
        assert smol_session.checkpoints is None
        assert smol_session.info.extra["memory"] == "kv"
        assert not smol_session.info.supports_thinking

    def test_thinking_switch_is_harmless_without_thinking(self, smol_session: ChatSession) -> None:
        on = smol_session.render_prompt(HELLO, thinking=True)
        assert on == smol_session.render_prompt(HELLO, thinking=False)
        deltas, _ = collect(smol_session.stream(HELLO, GREEDY, thinking=True))
        assert "".join(deltas) == reply_text(smol_session)


class TestThreads:
    """A hybrid (P-core + E-core) CPU cannot exist on this machine: its sysfs is
    written into a temporary folder in the layout Linux uses."""

    @staticmethod
    def sysfs(root: Path, p_cpus: str, cores: dict[int, int]) -> Path:
        (root / "cpu_core").mkdir(parents=True)
        (root / "cpu_core" / "cpus").write_text(p_cpus + "\n")
        for cpu, core in cores.items():
            topo = root / "system" / "cpu" / f"cpu{cpu}" / "topology"
            topo.mkdir(parents=True)
            (topo / "core_id").write_text(f"{core}\n")
            (topo / "physical_package_id").write_text("0\n")
        return root

    def test_performance_cores_without_hyperthreads(self, tmp_path: Path) -> None:
        # 4 P-cores with 2 threads each (cpus 0-7), E-cores elsewhere.
        root = self.sysfs(tmp_path, "0-7", {cpu: cpu // 2 for cpu in range(8)})
        assert _performance_cores(root) == 4

    def test_not_a_hybrid_cpu(self, tmp_path: Path) -> None:
        assert _performance_cores(tmp_path) is None

    def test_cpu_list_format(self) -> None:
        assert _cpu_list("0-3,8,10-11\n") == [0, 1, 2, 3, 8, 10, 11]

    def test_default_threads_are_physical_cores(self, smol_session: ChatSession) -> None:
        assert smol_session.info.extra["threads"] == str(physical_cores())


def smol_session_reply(path: Path, chat: list[Message]) -> Iterator[Event]:
    """A greedy reply to ``chat`` from a fresh session (nothing reused)."""
    with ChatSession(path, EngineOptions(n_ctx=2048)) as s:
        yield from s.stream(chat, GREEDY)


@pytest.fixture(scope="module")
def backend(starter_model_path: Path) -> Iterator[LocalBackend]:
    backend = LocalBackend(starter_model_path, EngineOptions(n_ctx=2048), name="The starter model")
    yield backend
    backend.close()


class TestLocalBackend:
    """The ChatBackend over a ChatSession: a Turn in, the same reply out."""

    def test_a_turn_gets_the_sessions_reply(
        self, backend: LocalBackend, reference_reply: str
    ) -> None:
        turn = Turn(messages=tuple(HELLO), sampling=GREEDY, cache_key=1)
        deltas, done = collect(backend.stream(turn, GREEDY, stop=threading.Event()))
        assert "".join(deltas) == reference_reply
        assert done.reason in (FinishReason.STOP, FinishReason.LENGTH)
        assert backend.info.name == "The starter model"  # the name it was opened with
        assert backend.info.architecture == "llama"

    def test_the_context_check_and_the_reply_render_the_prompt_once(
        self, backend: LocalBackend, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        renders: list[int] = []
        prompts = backend.session._prompts
        render = prompts.render

        def counting(conversation: Sequence[Message], variables: Mapping[str, object]) -> str:
            renders.append(len(conversation))
            return render(conversation, variables)

        monkeypatch.setattr(prompts, "render", counting)
        turn = Turn(messages=(Message("user", "What is a lighthouse?"),), cache_key=2)
        usage = backend.context_usage(turn, GREEDY)
        _, done = collect(backend.stream(turn, GREEDY, stop=threading.Event()))
        assert renders == [1]
        assert usage.prompt_tokens == done.stats.prompt_tokens
        assert usage.reply_budget == GREEDY.max_tokens  # SmolLM2 cannot think
        # Another turn is rendered anew.
        backend.context_usage(replace(turn, messages=(*turn.messages, *HELLO)), GREEDY)
        assert renders == [1, 2]

    def test_warm_reads_ahead_what_the_next_turn_reuses(self, backend: LocalBackend) -> None:
        chat = (
            Message("user", "Name a bird."),
            Message("assistant", "A robin."),
            Message("user", "And a fish?"),
        )
        turn = Turn(messages=chat, cache_key=3)
        reused, read = backend.warm(turn, stop=threading.Event())
        assert read > 0
        _, done = collect(backend.stream(turn, GREEDY, stop=threading.Event()))
        assert done.stats.reused_tokens == reused + read
        assert done.stats.evaluated_tokens == done.stats.prompt_tokens - (reused + read)
