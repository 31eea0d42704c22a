"""The engine thread (app.worker) on a ScriptedBackend: requests in, signals out.

The model is scripted (tests.fakes.scripted says what it stands in for); the
QThread, the queued signals and the cancel events are the real ones. The test
side is a QObject on the GUI thread with bound slots, as EngineClient is, so
every result crosses the thread boundary the way it does in the app.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from PySide6.QtCore import QObject, Signal, Slot
from pytestqt.qtbot import QtBot

from app.worker import EngineThread, LoadRequest, OpenBackend
from engine.errors import GenerationError, ModelLoadError
from engine.inference.backend import ChatBackend
from engine.types import (
    ContextUsage,
    EngineOptions,
    FinishReason,
    Message,
    ModelInfo,
    ReplyDone,
    SamplingParams,
    ThinkingDelta,
    Turn,
)
from tests.fakes import Piece, ScriptedBackend, failing_opener, scripted_opener

WAIT_MS = 5000
HELLO = Turn(messages=(Message("user", "Say hello."),), cache_key=1)


class Driver(QObject):
    """Sends requests as queued signals and records every result, on the GUI thread."""

    load = Signal(object)
    generate = Signal(int, object, object)
    measure = Signal(int, object)
    warm = Signal(int, object, object)
    got = Signal(str, object)  # a result arrived here: its signal's name, its arguments

    def __init__(self, engine: EngineThread) -> None:
        super().__init__()
        self.log: list[tuple[str, tuple[object, ...]]] = []
        w = engine.worker
        self.load.connect(w.load)
        self.generate.connect(w.generate)
        self.measure.connect(w.measure)
        self.warm.connect(w.warm)
        w.model_loading.connect(self.on_model_loading)
        w.model_loaded.connect(self.on_model_loaded)
        w.model_load_failed.connect(self.on_model_load_failed)
        w.delta_ready.connect(self.on_delta_ready)
        w.thinking_ready.connect(self.on_thinking_ready)
        w.prompt_measured.connect(self.on_prompt_measured)
        w.reply_finished.connect(self.on_reply_finished)
        w.reply_failed.connect(self.on_reply_failed)
        w.context_exceeded.connect(self.on_context_exceeded)
        w.usage_measured.connect(self.on_usage_measured)
        w.warm_progress.connect(self.on_warm_progress)
        w.warm_finished.connect(self.on_warm_finished)

    def _record(self, name: str, *args: object) -> None:
        assert threading.current_thread() is threading.main_thread(), "not queued"
        self.log.append((name, args))
        self.got.emit(name, args)

    @Slot(str)
    def on_model_loading(self, path: str) -> None:
        self._record("model_loading", path)

    @Slot(object)
    def on_model_loaded(self, info: ModelInfo) -> None:
        self._record("model_loaded", info)

    @Slot(str)
    def on_model_load_failed(self, sentence: str) -> None:
        self._record("model_load_failed", sentence)

    @Slot(int, str)
    def on_delta_ready(self, request_id: int, text: str) -> None:
        self._record("delta_ready", request_id, text)

    @Slot(int, str)
    def on_thinking_ready(self, request_id: int, text: str) -> None:
        self._record("thinking_ready", request_id, text)

    @Slot(int, object)
    def on_prompt_measured(self, request_id: int, usage: ContextUsage) -> None:
        self._record("prompt_measured", request_id, usage)

    @Slot(int, object)
    def on_reply_finished(self, request_id: int, done: ReplyDone) -> None:
        self._record("reply_finished", request_id, done)

    @Slot(int, str)
    def on_reply_failed(self, request_id: int, sentence: str) -> None:
        self._record("reply_failed", request_id, sentence)

    @Slot(int, object, int)
    def on_context_exceeded(self, request_id: int, usage: ContextUsage, dropped: int) -> None:
        self._record("context_exceeded", request_id, usage, dropped)

    @Slot(int, object)
    def on_usage_measured(self, conversation_id: int, usage: ContextUsage) -> None:
        self._record("usage_measured", conversation_id, usage)

    @Slot(int, int, int)
    def on_warm_progress(self, request_id: int, done: int, total: int) -> None:
        self._record("warm_progress", request_id, done, total)

    @Slot(int, int, int)
    def on_warm_finished(self, request_id: int, reused: int, read: int) -> None:
        self._record("warm_finished", request_id, reused, read)

    # -- for the tests ---------------------------------------------------------

    def names(self, request_id: int) -> list[str]:
        """The signals that came for ``request_id``, in order."""
        return [name for name, args in self.log if args and args[0] == request_id]

    def text(self, request_id: int, name: str = "delta_ready") -> str:
        return "".join(str(a[1]) for n, a in self.log if n == name and a[0] == request_id)

    def find(self, name: str, first: object = None) -> tuple[object, ...] | None:
        for n, args in self.log:
            if n == name and (first is None or args[0] == first):
                return args
        return None


@pytest.fixture
def start(qtbot: QtBot) -> Iterator[Callable[..., tuple[EngineThread, Driver]]]:
    """Starts an engine thread on an opener (loading ``path`` unless None); closes it after."""
    engines: list[EngineThread] = []

    def start_engine(
        opener: OpenBackend, path: str | None = "scripted.gguf"
    ) -> tuple[EngineThread, Driver]:
        engine = EngineThread(open_backend=opener)
        engines.append(engine)
        driver = Driver(engine)
        if path is not None:
            driver.load.emit(LoadRequest(path=path, options=EngineOptions(), models_dir=Path()))
            wait_for(qtbot, driver, "model_loaded")
        return engine, driver

    yield start_engine
    for engine in engines:
        engine.close()
    assert not any(e.thread.isRunning() for e in engines)


def wait_for(qtbot: QtBot, driver: Driver, name: str, first: object = None) -> tuple[object, ...]:
    """The arguments of the first ``name`` signal (for ``first``), waiting for it if need be."""
    found = driver.find(name, first)
    if found is None:

        def matches(got: str, args: tuple[object, ...]) -> bool:
            return got == name and (first is None or args[0] == first)

        with qtbot.waitSignal(driver.got, timeout=WAIT_MS, check_params_cb=matches):
            pass
        found = driver.find(name, first)
    assert found is not None
    return found


def reply_done(qtbot: QtBot, driver: Driver, request_id: int) -> ReplyDone:
    done = wait_for(qtbot, driver, "reply_finished", request_id)[1]
    assert isinstance(done, ReplyDone)
    return done


class TestGenerate:
    def test_deltas_then_reply_finished(
        self, qtbot: QtBot, start: Callable[..., tuple[EngineThread, Driver]]
    ) -> None:
        backend = ScriptedBackend(["Hello there, friend."])
        engine, driver = start(scripted_opener(backend))
        driver.generate.emit(1, HELLO, engine.cancel_event())
        done = reply_done(qtbot, driver, 1)
        assert done.reason is FinishReason.STOP
        assert done.stats.completion_tokens == 3
        assert driver.text(1) == "Hello there, friend."
        names = driver.names(1)
        assert names[0] == "prompt_measured" and names[-1] == "reply_finished"
        assert set(names[1:-1]) == {"delta_ready"}
        assert backend.turns == [HELLO]  # what the model read

    def test_thinking_comes_apart_from_the_answer(
        self, qtbot: QtBot, start: Callable[..., tuple[EngineThread, Driver]]
    ) -> None:
        reply: list[Piece] = [ThinkingDelta("They want "), ThinkingDelta("a greeting."), "Hi!"]
        engine, driver = start(scripted_opener(ScriptedBackend([reply])))
        driver.generate.emit(1, HELLO, engine.cancel_event())
        reply_done(qtbot, driver, 1)
        assert driver.text(1, "thinking_ready") == "They want a greeting."
        assert driver.text(1) == "Hi!"

    def test_the_models_sampling_with_the_persons_overrides(
        self, qtbot: QtBot, start: Callable[..., tuple[EngineThread, Driver]]
    ) -> None:
        model_defaults = SamplingParams(temperature=0.3, top_k=7)
        backend = ScriptedBackend(["a", "b"], sampling=model_defaults)
        engine, driver = start(scripted_opener(backend))
        overridden = replace(HELLO, overrides={"temperature": 0.9})
        exact = replace(HELLO, sampling=SamplingParams(max_tokens=5))
        driver.generate.emit(1, overridden, engine.cancel_event())
        driver.generate.emit(2, exact, engine.cancel_event())
        reply_done(qtbot, driver, 2)
        assert backend.params == [replace(model_defaults, temperature=0.9), exact.sampling]

    def test_a_failure_mid_reply_keeps_what_was_written(
        self, qtbot: QtBot, start: Callable[..., tuple[EngineThread, Driver]]
    ) -> None:
        sentence = "llama.cpp failed while writing the reply. Try again."
        backend = ScriptedBackend([["Half", " a", GenerationError(sentence)]])
        engine, driver = start(scripted_opener(backend))
        driver.generate.emit(1, HELLO, engine.cancel_event())
        assert wait_for(qtbot, driver, "reply_failed", 1) == (1, sentence)
        assert driver.text(1) == "Half a"
        assert driver.find("reply_finished", 1) is None

    def test_no_model_loaded(
        self, qtbot: QtBot, start: Callable[..., tuple[EngineThread, Driver]]
    ) -> None:
        engine, driver = start(scripted_opener(ScriptedBackend(["x"])), path=None)
        driver.generate.emit(4, HELLO, engine.cancel_event())
        sentence = wait_for(qtbot, driver, "reply_failed", 4)[1]
        assert sentence == "No model is loaded yet. Wait for it to load, then send again."


class TestStop:
    def test_stop_ends_the_running_reply_and_not_the_next(
        self, qtbot: QtBot, start: Callable[..., tuple[EngineThread, Driver]]
    ) -> None:
        gate = threading.Event()
        backend = ScriptedBackend(["one two three", "four five"], gate=gate)
        engine, driver = start(scripted_opener(backend))
        first, second = engine.cancel_event(), engine.cancel_event()
        driver.generate.emit(1, HELLO, first)
        driver.generate.emit(2, HELLO, second)  # waits behind the first
        assert wait_for(qtbot, driver, "delta_ready", 1) == (1, "one")
        first.set()  # Stop, while the model works on its second piece
        gate.set()
        done = reply_done(qtbot, driver, 1)
        assert done.reason is FinishReason.CANCELLED
        assert done.stats.completion_tokens == 1  # nothing generated after Stop
        assert driver.text(1) == "one"
        assert reply_done(qtbot, driver, 2).reason is FinishReason.STOP
        assert driver.text(2) == "four five"
        assert not second.is_set()

    def test_stop_of_a_waiting_request_leaves_the_running_one_alone(
        self, qtbot: QtBot, start: Callable[..., tuple[EngineThread, Driver]]
    ) -> None:
        gate = threading.Event()
        backend = ScriptedBackend(["one two three", "four five"], gate=gate)
        engine, driver = start(scripted_opener(backend))
        first, second = engine.cancel_event(), engine.cancel_event()
        driver.generate.emit(1, HELLO, first)
        driver.generate.emit(2, HELLO, second)
        wait_for(qtbot, driver, "delta_ready", 1)
        second.set()  # Stop for the request still waiting
        gate.set()
        assert reply_done(qtbot, driver, 1).reason is FinishReason.STOP
        assert driver.text(1) == "one two three"
        done = reply_done(qtbot, driver, 2)
        assert (done.reason, done.stats.completion_tokens) == (FinishReason.CANCELLED, 0)
        assert driver.text(2) == ""
        assert not first.is_set()

    def test_cancel_all_reaches_running_and_waiting_requests(
        self, qtbot: QtBot, start: Callable[..., tuple[EngineThread, Driver]]
    ) -> None:
        gate = threading.Event()
        backend = ScriptedBackend(["one two", "three four"], gate=gate)
        engine, driver = start(scripted_opener(backend))
        first, second = engine.cancel_event(), engine.cancel_event()
        driver.generate.emit(1, HELLO, first)
        driver.warm.emit(2, HELLO, second)
        wait_for(qtbot, driver, "delta_ready", 1)
        engine.cancel_all()
        assert first.is_set() and second.is_set()
        assert reply_done(qtbot, driver, 1).reason is FinishReason.CANCELLED
        assert wait_for(qtbot, driver, "warm_finished", 2) == (2, 0, 0)
        later = engine.cancel_event()
        assert not later.is_set()  # what comes after is not cancelled
        driver.generate.emit(3, HELLO, later)
        gate.set()
        assert reply_done(qtbot, driver, 3).reason is FinishReason.STOP

    def test_close_during_a_reply_ends_it_and_frees_the_model(
        self, qtbot: QtBot, start: Callable[..., tuple[EngineThread, Driver]]
    ) -> None:
        backend = ScriptedBackend(["one two three"], gate=threading.Event())
        engine, driver = start(scripted_opener(backend))
        # Made here rather than by the engine: close() reaches it all the same.
        own = threading.Event()
        driver.generate.emit(1, HELLO, own)
        wait_for(qtbot, driver, "delta_ready", 1)
        engine.close()  # returns: the reply held at the gate ended
        assert own.is_set()
        assert backend.closed
        assert not engine.thread.isRunning()


class TestContext:
    # 100 words of window; a 50-token reply is reserved a quarter of it (25).
    SMALL = SamplingParams(max_tokens=50)

    @staticmethod
    def words(n: int) -> str:
        return " ".join(["word"] * n)

    def test_a_full_context_asks_to_drop_the_oldest_turns(
        self, qtbot: QtBot, start: Callable[..., tuple[EngineThread, Driver]]
    ) -> None:
        backend = ScriptedBackend(["unused"], n_ctx=100)
        engine, driver = start(scripted_opener(backend))
        w = self.words
        chat = (
            Message("system", "Be brief."),
            *(Message(role, w(20)) for role in ("user", "assistant", "user", "assistant")),
            Message("user", w(5)),
        )
        turn = Turn(messages=chat, sampling=self.SMALL)
        driver.generate.emit(1, turn, engine.cancel_event())
        args = wait_for(qtbot, driver, "context_exceeded", 1)
        # 87 words leave no 25 for the reply; without the first turn (40) they do.
        assert args == (1, ContextUsage(87, 50, 100), 2)
        assert backend.turns == []  # no reply was started
        assert driver.names(1) == ["context_exceeded"]

    def test_a_last_message_too_long_for_any_context_gets_a_sentence(
        self, qtbot: QtBot, start: Callable[..., tuple[EngineThread, Driver]]
    ) -> None:
        engine, driver = start(scripted_opener(ScriptedBackend(["unused"], n_ctx=100)))
        turn = Turn(messages=(Message("user", self.words(120)),), sampling=self.SMALL)
        driver.generate.emit(1, turn, engine.cancel_event())
        sentence = wait_for(qtbot, driver, "reply_failed", 1)[1]
        assert sentence == (
            "This conversation is longer than the model's context window (100 tokens). "
            "Start a new chat or drop the oldest messages."
        )

    def test_measure_says_how_full_the_window_is(
        self, qtbot: QtBot, start: Callable[..., tuple[EngineThread, Driver]]
    ) -> None:
        _engine, driver = start(scripted_opener(ScriptedBackend(n_ctx=100)))
        turn = Turn(messages=(Message("user", self.words(30)),), sampling=self.SMALL)
        driver.measure.emit(42, turn)
        assert wait_for(qtbot, driver, "usage_measured", 42) == (42, ContextUsage(30, 50, 100))


class TestLoadAndWarm:
    def test_loading_another_model_frees_the_first(
        self, qtbot: QtBot, start: Callable[..., tuple[EngineThread, Driver]]
    ) -> None:
        a, b = ScriptedBackend(path="a.gguf"), ScriptedBackend(path="b.gguf", name="B")
        engine, driver = start(scripted_opener({"a.gguf": a, "b.gguf": b}), path="a.gguf")
        driver.log.clear()
        driver.load.emit(LoadRequest(path="b.gguf", options=EngineOptions(), models_dir=Path()))
        assert wait_for(qtbot, driver, "model_loaded") == (b.info,)
        assert [name for name, _ in driver.log] == ["model_loading", "model_loaded"]
        assert a.closed and not b.closed
        engine.close()
        assert b.closed

    def test_a_failed_load_says_why_in_a_sentence(
        self, qtbot: QtBot, start: Callable[..., tuple[EngineThread, Driver]]
    ) -> None:
        sentence = (
            "big.gguf needs more memory than is free. Close other programs or pick a smaller model."
        )
        _engine, driver = start(failing_opener(ModelLoadError(sentence)), path=None)
        driver.load.emit(LoadRequest(path="big.gguf", options=EngineOptions(), models_dir=Path()))
        assert wait_for(qtbot, driver, "model_load_failed") == (sentence,)

    def test_a_crashing_load_still_gets_a_sentence(
        self, qtbot: QtBot, start: Callable[..., tuple[EngineThread, Driver]]
    ) -> None:
        def crash(request: LoadRequest) -> ChatBackend:
            raise RuntimeError("a bug")

        _engine, driver = start(crash, path=None)
        driver.load.emit(LoadRequest(path="x.gguf", options=EngineOptions(), models_dir=Path()))
        sentence = wait_for(qtbot, driver, "model_load_failed")[0]
        assert sentence == (
            "Hearth could not load the model because of an internal error. Try loading it "
            "again or choose another model; the details are in the log file."
        )

    def test_warm_reports_with_its_request_id(
        self, qtbot: QtBot, start: Callable[..., tuple[EngineThread, Driver]]
    ) -> None:
        backend = ScriptedBackend()
        engine, driver = start(scripted_opener(backend))
        turn = Turn(messages=(Message("user", "one two three"),), cache_key=9)
        driver.warm.emit(7, turn, engine.cancel_event())
        assert wait_for(qtbot, driver, "warm_finished", 7) == (7, 0, 3)
        assert driver.find("warm_progress", 7) == (7, 3, 3)
        assert backend.warmed == [turn]

    def test_a_cancelled_warm_reads_nothing(
        self, qtbot: QtBot, start: Callable[..., tuple[EngineThread, Driver]]
    ) -> None:
        engine, driver = start(scripted_opener(ScriptedBackend()))
        cancel = engine.cancel_event()
        cancel.set()
        driver.warm.emit(8, HELLO, cancel)
        assert wait_for(qtbot, driver, "warm_finished", 8) == (8, 0, 0)


def test_the_scripted_backend_is_a_chat_backend() -> None:
    backend: ChatBackend = ScriptedBackend()  # mypy checks the protocol here
    assert backend.info.name == "Scripted model"


def test_a_turn_cannot_change_after_it_is_sent() -> None:
    messages = [Message("user", "Hi")]
    overrides: dict[str, float | int] = {"temperature": 0.5}
    turn = Turn(messages=messages, overrides=overrides)  # type: ignore[arg-type]
    messages.append(Message("user", "later"))
    overrides["temperature"] = 2.0
    assert turn.messages == (Message("user", "Hi"),)
    assert turn.overrides == {"temperature": 0.5}
    with pytest.raises(TypeError):
        turn.overrides["temperature"] = 1.0  # type: ignore[index]
