"""Images in a turn on real llama.cpp + libmtmd (issue 13).

The model is the tiny random-weight ``qwen35`` (hybrid recurrent + M-RoPE, like
Qwen3.5) and a random-weight ``qwen3vl_merger`` projector built for its width
(tests/fixtures/mmproj.py): what they say is noise, so these tests check tokens,
positions, reuse and caching, and compare with libmtmd's own evaluation helper.
"""

from __future__ import annotations

import ctypes
import io
import shutil
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import llama_cpp
import llama_cpp.mtmd_cpp as mtmd
import pytest

from engine.errors import GenerationError, ModelLoadError
from engine.images import image_part
from engine.inference import session as session_module
from engine.inference.chat_template import IMAGE_MARKER
from engine.inference.session import ChatSession
from engine.types import (
    EngineOptions,
    FinishReason,
    ImagePart,
    Message,
    ModelInfo,
    PromptProgress,
    ReplyDone,
    SamplingParams,
    TextDelta,
    TextPart,
)
from tests.fixtures.mmproj import build_mmproj_gguf
from tests.fixtures.qwen35 import N_EMBD

BUDGET = 64
GREEDY = SamplingParams(max_tokens=10, max_thinking_tokens=10, temperature=0.0, top_k=1)
OPTIONS = EngineOptions(n_ctx=4096, image_max_tokens=BUDGET)


def png(width: int, height: int, color: tuple[int, int, int]) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (width, height), color).save(out, "PNG")
    return out.getvalue()


RED = image_part(png(300, 200, (200, 30, 30)), "red.png")
BLUE = image_part(png(120, 240, (20, 40, 220)), "blue.png")


@pytest.fixture(scope="module")
def projector_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_mmproj_gguf(tmp_path_factory.mktemp("mmproj") / "mmproj-F32.gguf",
                             n_embd_text=N_EMBD)  # fmt: skip


@pytest.fixture
def seeing(qwen35_model_path: Path, projector_path: Path) -> Iterator[ChatSession]:
    session = ChatSession(qwen35_model_path, OPTIONS, projector=projector_path)
    yield session
    session.close()


class Sampled:
    """The token ids the session samples (the reply's text is byte noise)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.ids: list[int] = []
        real = llama_cpp.llama_sampler_sample

        def spy(*args: object) -> int:
            token = int(real(*args))  # type: ignore[arg-type]
            self.ids.append(token)
            return token

        monkeypatch.setattr(session_module.llama_cpp, "llama_sampler_sample", spy)


def reply(session: ChatSession, conversation: list[Message], **kw: object) -> tuple[str, ReplyDone]:
    events = list(session.stream(conversation, GREEDY, thinking=False, **kw))  # type: ignore[arg-type]
    done = events[-1]
    assert isinstance(done, ReplyDone)
    return "".join(e.text for e in events if isinstance(e, TextDelta)), done


def asking(*parts: ImagePart | str) -> Message:
    return Message("user", tuple(TextPart(p) if isinstance(p, str) else p for p in parts))


def libmtmd_reference(
    session: ChatSession, projector: Path, conversation: list[Message], n: int
) -> list[int]:
    """The first ``n`` greedy tokens when libmtmd's own helper reads the same prompt
    (``mtmd_tokenize`` + ``mtmd_helper_eval_chunks``) into a fresh context."""
    text = session.render_prompt(conversation, thinking=False)
    data = text.replace(IMAGE_MARKER, mtmd.mtmd_default_marker().decode()).encode()
    model = session._llm._model.model
    cparams = llama_cpp.llama_context_default_params()
    cparams.n_ctx, cparams.n_batch, cparams.n_ubatch = 4096, 512, 512
    ctx = llama_cpp.llama_init_from_model(model, cparams)
    vparams = mtmd.mtmd_context_params_default()
    vparams.use_gpu, vparams.warmup, vparams.image_max_tokens = False, False, BUDGET
    mctx = mtmd.mtmd_init_from_file(str(projector).encode(), model, vparams)
    images = [p for m in conversation for p in m.images]
    bitmaps = (mtmd.mtmd_bitmap_p_ctypes * len(images))()
    for i, image in enumerate(images):
        buf = (ctypes.c_uint8 * len(image.data)).from_buffer_copy(image.data)
        bitmaps[i] = mtmd.mtmd_helper_bitmap_init_from_buf(mctx, buf, len(image.data), False)
    prompt = mtmd.mtmd_input_text()
    prompt.text, prompt.text_len, prompt.add_special, prompt.parse_special = (
        data,
        len(data),
        True,
        True,
    )
    chunks = mtmd.mtmd_input_chunks_init()
    sampler = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
    llama_cpp.llama_sampler_chain_add(sampler, llama_cpp.llama_sampler_init_greedy())
    batch = llama_cpp.llama_batch_init(1, 0, 1)
    try:
        assert mtmd.mtmd_tokenize(mctx, chunks, ctypes.byref(prompt), bitmaps, len(images)) == 0
        n_past = llama_cpp.llama_pos(0)
        assert (
            mtmd.mtmd_helper_eval_chunks(mctx, ctx, chunks, 0, 0, 512, True, ctypes.byref(n_past))
            == 0
        )
        out, pos = [], n_past.value
        for _ in range(n):
            token = int(llama_cpp.llama_sampler_sample(sampler, ctx, -1))
            out.append(token)
            batch.n_tokens, batch.token[0], batch.pos[0] = 1, token, pos
            batch.n_seq_id[0], batch.seq_id[0][0], batch.logits[0] = 1, 0, 1
            assert llama_cpp.llama_decode(ctx, batch) == 0
            pos += 1
        return out
    finally:
        llama_cpp.llama_batch_free(batch)
        llama_cpp.llama_sampler_free(sampler)
        mtmd.mtmd_input_chunks_free(chunks)
        for bitmap in bitmaps:
            mtmd.mtmd_bitmap_free(bitmap)
        mtmd.mtmd_free(mctx)
        llama_cpp.llama_free(ctx)


def test_an_image_turn_reads_what_libmtmd_reads(
    seeing: ChatSession, projector_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sampled = Sampled(monkeypatch)
    conversation = [asking(RED, BLUE, "Which is warmer?")]
    _, done = reply(seeing, conversation)
    assert seeing.info.vision
    ours = sampled.ids
    monkeypatch.undo()
    assert ours == libmtmd_reference(seeing, projector_path, conversation, len(ours))
    # Both images were evaluated: their embeddings took cells beyond their positions.
    red, blue = (seeing.projector.prepare(i) for i in (RED, BLUE))  # type: ignore[union-attr]
    assert red.n_tokens > red.n_pos > 0 and blue.n_tokens > blue.n_pos > 0  # M-RoPE
    usage = seeing.context_usage(conversation, GREEDY, thinking=False)
    assert usage.prompt_tokens == done.stats.prompt_tokens + (red.n_tokens - red.n_pos) + (
        blue.n_tokens - blue.n_pos
    )
    assert seeing.projector.encodes == 2  # type: ignore[union-attr]


def test_the_next_turn_reads_only_the_new_text_and_matches_a_fresh_read(
    seeing: ChatSession, qwen35_model_path: Path, projector_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    first = [asking(RED, "What is this?")]
    answer, done1 = reply(seeing, first)
    second = [*first, Message("assistant", answer), asking("And its colour?")]
    sampled = Sampled(monkeypatch)
    _, done2 = reply(seeing, second)
    reused = done2.stats.reused_tokens
    image_end = (
        next(iter(seeing._prepare(first, False, False).images))
        + seeing.projector.prepare(RED).n_pos
    )  # type: ignore[union-attr]
    assert reused > image_end  # the image is in the reused prefix (a recurrent checkpoint)
    assert done2.stats.evaluated_tokens == done2.stats.prompt_tokens - reused
    assert seeing.projector.encodes == 1  # type: ignore[union-attr]
    ours = sampled.ids
    monkeypatch.undo()
    fresh = ChatSession(qwen35_model_path, OPTIONS, projector=projector_path)
    try:
        again = Sampled(monkeypatch)
        _, done_fresh = reply(fresh, second)
        assert done_fresh.stats.reused_tokens == 0
        assert again.ids == ours  # reusing the prefix changed nothing the model reads
    finally:
        fresh.close()
    assert done1.stats.prompt_tokens < done2.stats.prompt_tokens


def test_an_image_shown_again_is_not_encoded_again(seeing: ChatSession) -> None:
    first = [asking(RED, "What is this?")]
    answer, _ = reply(seeing, first)
    again = [*first, Message("assistant", answer), asking(RED, "Look again")]
    events = list(seeing.stream(again, GREEDY, thinking=False))
    assert not any(isinstance(e, PromptProgress) for e in events)  # nothing to encode
    assert seeing.projector.encodes == 1  # type: ignore[union-attr]
    # Another chat with the same image: its state is not in the context, its encoding is.
    _, done = reply(seeing, [asking(RED, "Hello")], cache_key="other")
    assert done.stats.reused_tokens < done.stats.prompt_tokens // 2
    assert seeing.projector.encodes == 1  # type: ignore[union-attr]


def test_stop_while_the_image_is_encoded_ends_the_turn_and_keeps_the_encoding(
    seeing: ChatSession,
) -> None:
    stop = threading.Event()
    events = []
    for event in seeing.stream([asking(BLUE, "Hi")], GREEDY, thinking=False, stop=stop):
        events.append(event)
        if isinstance(event, PromptProgress):
            assert (event.done, event.total) == (0, 1)
            stop.set()  # the encoder starts when the stream resumes
    done = events[-1]
    assert isinstance(done, ReplyDone) and done.reason is FinishReason.CANCELLED
    assert done.stats.completion_tokens == 0
    # The next try neither waits for nor repeats the encoding.
    events = list(seeing.stream([asking(BLUE, "Hi")], GREEDY, thinking=False))
    assert not any(isinstance(e, PromptProgress) for e in events)
    assert seeing.projector.encodes == 1  # type: ignore[union-attr]


def test_a_projector_made_for_another_model_is_refused_with_a_sentence(
    qwen35_model_path: Path, tmp_path: Path
) -> None:
    wrong = build_mmproj_gguf(tmp_path / "mmproj-other.gguf", n_embd_text=N_EMBD * 2)
    with pytest.raises(ModelLoadError, match="would not load with this model"):
        ChatSession(qwen35_model_path, OPTIONS, projector=wrong)
    with pytest.raises(ModelLoadError, match="is missing"):
        ChatSession(qwen35_model_path, OPTIONS, projector=tmp_path / "gone.gguf")


def test_a_model_that_cannot_see_says_so_and_reads_earlier_images_as_names(
    qwen35_session: ChatSession,
) -> None:
    assert not qwen35_session.info.vision
    with pytest.raises(GenerationError, match="cannot see images"):
        qwen35_session.stream([asking(RED, "What is it?")], GREEDY)
    earlier = [asking(RED, "What is it?"), Message("assistant", "A red box."), asking("Thanks")]
    assert "[Image: red.png]\nWhat is it?" in qwen35_session.render_prompt(earlier)
    _, done = reply(qwen35_session, earlier)
    assert done.reason in (FinishReason.STOP, FinishReason.LENGTH)


def test_a_chat_warmed_after_a_switch_has_its_images_read(seeing: ChatSession) -> None:
    chat = [asking(RED, "What is this?"), Message("assistant", "A box."), asking("More?")]
    reused, evaluated = seeing.warm(chat, thinking=False, cache_key="warm")
    assert (reused, evaluated) == (0, evaluated) and evaluated > seeing.projector.prepare(RED).n_pos  # type: ignore[union-attr]
    _, done = reply(seeing, chat, cache_key="warm")
    assert done.stats.reused_tokens >= evaluated - 1


def test_the_window_and_cli_load_the_vision_file_beside_the_model(
    qwen35_model_path: Path, projector_path: Path, tmp_path: Path
) -> None:
    """app.backends.open_local: pairs by width, honours "no vision" for the file, and a
    vision file that will not load leaves a model that says why it cannot see."""
    from app.backends import LoadRequest, open_local

    folder = tmp_path / "models"
    folder.mkdir()
    model = folder / "Tiny-Q8_0.gguf"
    shutil.copyfile(qwen35_model_path, model)
    shutil.copyfile(projector_path, folder / "Tiny-mmproj-F32.gguf")

    def load(options: EngineOptions) -> ModelInfo:
        backend = open_local(LoadRequest(path=str(model), options=options, models_dir=folder))
        try:
            return backend.info
        finally:
            backend.close()

    assert load(OPTIONS).vision
    assert not load(replace(OPTIONS, no_vision=(model.name,))).vision
    data = projector_path.read_bytes()
    (folder / "Tiny-mmproj-F32.gguf").write_bytes(data[: len(data) * 3 // 4])  # cut short
    info = load(OPTIONS)
    assert not info.vision
    assert "would not load with this model" in info.extra["device_note"]


def test_hearth_chat_image_stores_and_shows_it_and_refuses_bad_input(
    qwen35_model_path: Path, projector_path: Path, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """``hearth chat --image FILE`` (repeatable) through app.main, on the tiny model with
    its vision file beside it; a bad file or a model without vision saves nothing."""
    from app.main import main
    from engine.history.store import ChatStore

    folder = tmp_path / "m"
    folder.mkdir()
    model = folder / "Tiny-Q8_0.gguf"
    shutil.copyfile(qwen35_model_path, model)
    shutil.copyfile(projector_path, folder / "Tiny-mmproj-F32.gguf")
    red, blue = tmp_path / "red.png", tmp_path / "blue.png"
    red.write_bytes(RED.data)
    blue.write_bytes(BLUE.data)
    data = tmp_path / "data"
    base = ["--data-dir", str(data), "chat", "--model", str(model), "--max-tokens", "4"]
    assert main([*base, "--image", str(red), "--image", str(blue), "What are these?"]) == 0
    db = next(data.rglob("*.sqlite3"))
    store = ChatStore(db)
    try:
        (conv,) = store.list_conversations()
        question = store.messages(conv.id)[0]
        assert [a.name for a in question.attachments] == ["red.png", "blue.png"]
        assert store.attachment_data(question.attachments[1].sha256) == BLUE.data
    finally:
        store.close()
    capsys.readouterr()
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    assert main([*base, "--image", str(notes), "What is it?"]) == 2
    assert "“notes.txt” is not an image Hearth can read" in capsys.readouterr().err
    (folder / "Tiny-mmproj-F32.gguf").unlink()  # moved away: the model cannot see now
    assert main([*base, "--image", str(red), "And now?"]) == 2
    assert "cannot see images" in capsys.readouterr().err
    store = ChatStore(db)
    try:
        assert len(store.list_conversations()) == 1  # nothing saved by the refusals
    finally:
        store.close()
