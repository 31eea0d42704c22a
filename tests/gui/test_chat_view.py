"""The chat view: what a person sees of a reply, and that streaming stays cheap."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest
from PySide6.QtCore import QObject, Qt, QUrl, Slot
from PySide6.QtGui import QDesktopServices, QGuiApplication, QTextCursor, QTextDocument
from pytestqt.qtbot import QtBot

from engine.history.types import MessageStatus, StoredMessage
from tests.gui.conftest import click_text
from ui.chat_view import EARLIER_PAGE, ChatView, first_shown

MARKDOWN = """## Title

Some **bold** prose with a [link](https://example.com/page) and `code`.

- one
- two

```python
print("hello")
```

| a | b |
|---|---|
| 1 | 2 |

<b>raw html</b> <script>alert(1)</script> ![pixel](http://tracker.example/p.png)
"""


def words(text: str) -> str:
    return " ".join(text.split())


def message(mid: int, role: str, content: str) -> StoredMessage:
    return StoredMessage(mid, 1, role, content, MessageStatus.COMPLETE, 0.0)  # type: ignore[arg-type]


@pytest.fixture
def view(qtbot: QtBot) -> ChatView:
    v = ChatView()
    qtbot.addWidget(v)
    v.resize(700, 500)
    v.show()
    return v


class _UrlCatcher(QObject):
    def __init__(self) -> None:
        super().__init__()
        self.opened: list[str] = []

    @Slot(QUrl)
    def handle(self, url: QUrl) -> None:
        self.opened.append(url.toString())


@pytest.fixture
def opened_urls() -> Iterator[list[str]]:
    """Catch what would open in the browser (no browser here)."""
    catcher = _UrlCatcher()
    for scheme in ("http", "https"):
        QDesktopServices.setUrlHandler(scheme, catcher, "handle")
    yield catcher.opened
    for scheme in ("http", "https"):
        QDesktopServices.unsetUrlHandler(scheme)


def test_markdown_renders_and_html_in_replies_is_only_text(view: ChatView) -> None:
    view.show_messages([message(1, "user", "<i>hi</i>"), message(2, "assistant", MARKDOWN)])
    text = view.plain_text()
    assert "## Title" not in text and "Title" in text  # a heading, not raw markup
    assert "<b>raw html</b>" in text and "<script>alert(1)</script>" in text  # shown, not run
    assert "<i>hi</i>" in text  # what the person typed is shown as typed
    html = view.toHtml()
    assert "<img" not in html  # images are never loaded...
    assert "[image: pixel]" in text  # ...they become a link to click


def test_nothing_remote_is_ever_loaded(view: ChatView) -> None:
    asked: list[str] = []
    original = ChatView.loadResource

    def spy(self: ChatView, kind: int, url: QUrl) -> object:
        asked.append(url.toString())
        return original(self, kind, url)

    view.loadResource = spy.__get__(view)  # type: ignore[method-assign]
    view.show_messages([message(1, "assistant", MARKDOWN)])
    assert (
        view.loadResource(QTextDocument.ResourceType.ImageResource, QUrl("http://x/y.png")) is None
    )
    assert all(not u.startswith("http://tracker") for u in asked[:-1])


def test_links_open_only_when_clicked(qtbot: QtBot, view: ChatView, opened_urls: list[str]) -> None:
    view.show_messages([message(1, "assistant", MARKDOWN)])
    assert opened_urls == []  # rendering opened nothing
    click_text(qtbot, view, "link")
    assert opened_urls == ["https://example.com/page"]


def test_copy_button_copies_the_code_block(qtbot: QtBot, view: ChatView) -> None:
    QGuiApplication.clipboard().clear()
    view.show_messages([message(1, "assistant", MARKDOWN)])
    click_text(qtbot, view, "Copy")  # the code block's button comes first
    assert QGuiApplication.clipboard().text() == 'print("hello")\n'


def test_streamed_reply_looks_like_the_saved_one(qtbot: QtBot, view: ChatView) -> None:
    view.begin_reply()
    for i in range(0, len(MARKDOWN), 3):
        view.append_reply(MARKDOWN[i : i + 3])
        if i % 30 == 0:
            view._flush()  # a frame mid-stream, as the repaint timer would make
    view.end_reply(MessageStatus.COMPLETE)
    streamed = words(view.plain_text())

    other = ChatView()
    qtbot.addWidget(other)
    other.show_messages([message(1, "assistant", MARKDOWN)])
    saved = words(other.plain_text())
    assert saved.endswith(" Copy · Regenerate · Delete")  # the saved reply has its actions
    assert streamed == saved.removesuffix(" Copy · Regenerate · Delete")


# Joins that used to leave uneven gaps: a paragraph after a header, a table (code),
# a quote, a list; an empty block after a table followed by prose or a list.
JOINS = (
    MARKDOWN
    + "\nA paragraph after.\n\n> a quote\n\n1. one\n2. two\n\n```\ncode\n```\n```\nmore\n```\n"
    "after two tables\n\n1. **Step one**\n\n   Explain it.\n\n2. **Step two**\n\n"
    "   - nested\n   - more\n\n### The end\n\nLast line."
)


def layout(doc: QTextDocument, stop: str | None = None) -> list[tuple[object, ...]]:
    """Each block's text, frame depth, margins and where the layout put it."""
    out: list[tuple[object, ...]] = []
    block, lay = doc.begin(), doc.documentLayout()
    while block.isValid() and block.text() != stop:
        fmt, frame, depth = block.blockFormat(), QTextCursor(block).currentFrame(), 0
        while frame is not None and frame != doc.rootFrame():
            depth, frame = depth + 1, frame.parentFrame()
        rect = lay.blockBoundingRect(block)
        margins = (fmt.topMargin(), fmt.bottomMargin(), fmt.leftMargin(), fmt.indent())
        out.append((block.text(), depth, margins, rect.top(), rect.height()))
        block = block.next()
    return out


def fixed_width_view(qtbot: QtBot) -> ChatView:
    v = ChatView()
    qtbot.addWidget(v)
    v.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOn)  # same width for both
    v.resize(700, 500)
    v.show()
    return v


@pytest.mark.parametrize("chunk", [1, 7, 40])
def test_streamed_reply_is_laid_out_like_the_saved_one(qtbot: QtBot, chunk: int) -> None:
    """No gap where streamed blocks join: block for block, the same margins at the
    same heights as the finished reply re-rendered whole (so nothing jumps)."""
    before = [message(1, "user", "hello")]
    streamed = fixed_width_view(qtbot)
    streamed.show_messages(before)
    streamed.begin_reply()
    for i in range(0, len(JOINS), chunk):
        streamed.append_reply(JOINS[i : i + chunk])
        if (i // chunk) % 3 == 0:
            streamed._flush()  # frames at many different places in the text
    streamed.end_reply(MessageStatus.COMPLETE)

    saved = fixed_width_view(qtbot)
    saved.show_messages([*before, message(2, "assistant", JOINS)])
    want = layout(saved.document(), stop="Copy · Regenerate · Delete")
    got = layout(streamed.document())
    assert [b[0] for b in got] == [b[0] for b in want]  # the same blocks...
    assert got == want  # ...with the same margins, at the same places


def test_streaming_work_per_frame_does_not_grow_with_the_reply(
    qtbot: QtBot, view: ChatView, monkeypatch: pytest.MonkeyPatch
) -> None:
    rendered: list[int] = []
    renderer = view._renderer
    real_render = renderer.render

    def counting_render(text: str, register_code: object = None) -> str:
        rendered.append(len(text))
        return real_render(text, register_code)  # type: ignore[arg-type]

    monkeypatch.setattr(renderer, "render", counting_render)
    reply = MARKDOWN * 20
    view.begin_reply()
    frames = 0
    for i in range(0, len(reply), 40):
        view.append_reply(reply[i : i + 40])
        view._flush()  # one frame per chunk: far more frames than the timer would make
        frames += 1
    assert frames > 100
    # Re-rendering the whole reply each frame would render ~frames/2 × its length.
    assert sum(rendered) < 3 * len(reply), (sum(rendered), len(reply))


def test_auto_scroll_only_while_at_the_bottom(qtbot: QtBot, view: ChatView) -> None:
    view.begin_reply()
    bar = view.verticalScrollBar()
    for i in range(40):
        view.append_reply(f"Paragraph {i} with enough words to take some room.\n\n")
        view._flush()
    assert bar.maximum() > 0 and bar.value() == bar.maximum()  # followed the reply
    bar.setValue(0)  # the person scrolls up to read
    for i in range(40, 60):
        view.append_reply(f"Paragraph {i}.\n\n")
        view._flush()
    assert bar.value() == 0  # left where they were
    bar.setValue(bar.maximum())
    view.append_reply("The end.\n\n")
    view._flush()
    assert bar.value() == bar.maximum()


def test_thinking_streams_then_folds(qtbot: QtBot, view: ChatView) -> None:
    view.begin_reply()
    view.append_thinking("Let me consider the question carefully.")
    view._flush()
    assert "consider the question" in view.plain_text()
    assert view._stream is not None
    view._stream.think_started -= 12.4  # as if the thinking had taken 12 s
    view.append_reply("The answer is 42.")
    view._flush()
    view.end_reply(MessageStatus.COMPLETE)
    text = view.plain_text()
    assert "consider the question" not in text
    assert "Thought for 12 s" in text and "The answer is 42." in text


def test_long_chats_open_with_only_the_latest_messages(view: ChatView) -> None:
    many = [
        message(i, "user" if i % 2 else "assistant", f"message number {i}") for i in range(1, 501)
    ]
    view.show_messages(many)
    text = view.plain_text()
    assert "message number 500" in text and "message number 100" not in text
    assert f"Show {first_shown(many)} earlier messages" in text
    view.show_earlier()
    assert "message number 1\n" in view.plain_text() + "\n"


def test_a_chat_of_long_messages_opens_with_about_two_screens_of_them(view: ChatView) -> None:
    """Laying out a long chat is most of what a large history adds to the start."""
    long_text = "word " * 600  # 3,000 characters each
    many = [message(i, "user" if i % 2 else "assistant", f"m{i} {long_text}") for i in range(1, 41)]
    view.show_messages(many)
    text = view.plain_text()
    assert "m40 " in text and "m37 " in text  # at least the last few, always
    assert "m30 " not in text
    assert "Show 36 earlier messages" in text  # SHOWN_AT_LEAST of them: m37 to m40


def test_scrolling_to_the_top_brings_the_earlier_messages_and_keeps_the_place(
    qtbot: QtBot,
) -> None:
    v = ChatView()
    qtbot.addWidget(v)
    v.resize(600, 400)
    v.show()
    qtbot.waitExposed(v)
    many = [
        message(i, "user" if i % 2 else "assistant", f"message number {i}") for i in range(1, 201)
    ]
    v.show_messages(many)
    before = first_shown(many)
    wanted = f"message number {before - EARLIER_PAGE + 1}\n"
    assert wanted not in v.plain_text() + "\n"
    v.verticalScrollBar().setValue(0)  # as the person scrolling up
    qtbot.waitUntil(lambda: wanted in v.plain_text() + "\n")
    assert f"Show {before - EARLIER_PAGE} earlier messages" in v.plain_text()
    # The message that was first in the chat before is still at the top of the view.
    found = v.document().find(f"message number {before + 1}")
    assert not found.isNull()
    assert 0 <= v.cursorRect(found).top() < v.viewport().height() // 3


def test_a_chat_opened_before_the_window_shows_opens_at_its_end(qtbot: QtBot) -> None:
    """QTextEdit scrolls to its cursor (the top) on the first show, and lays a new
    document out lazily: the view must still open, and stay, at the newest message."""
    v = ChatView()
    qtbot.addWidget(v)
    v.resize(600, 300)
    v.show_messages([message(1, "user", "Question?"), message(2, "assistant", JOINS)])
    v.show()
    qtbot.waitExposed(v)
    bar = v.verticalScrollBar()
    qtbot.waitUntil(lambda: bar.maximum() > 0)
    assert bar.value() == bar.maximum()
    v.set_assistant_name("Another model")  # a re-render (the model loaded)
    assert bar.value() == bar.maximum()
    bar.setValue(0)  # the person scrolls up: re-renders keep them there
    v.set_assistant_name("A third model")
    assert bar.value() == 0


ROMAN_CHAT = [
    message(1, "user", "Tell me about the Roman empire and a capital."),
    message(2, "assistant", "The capital of France is Paris."),
    message(3, "user", "And the capital of Germany?"),
    message(4, "assistant", "The capital of Germany is Berlin.\n\n" + "Filler line.\n\n" * 30),
    message(5, "user", "Show me code."),
    message(6, "assistant", "Here it is:\n\n```python\nroman_numerals = {'I': 1}\n```\n"),
    message(7, "user", "Thanks."),
]


@pytest.mark.parametrize(
    ("msg_id", "word", "block_text"),
    [
        (4, "capital", "The capital of Germany is Berlin."),
        (2, "capital", "The capital of France is Paris."),
        (3, "capital", "And the capital of Germany?"),
        (6, "Roman", "roman_numerals = {'I': 1}"),  # inside a code block
        (1, "Roman", "Tell me about the Roman empire and a capital."),
    ],
)
def test_a_search_hit_selects_the_word_in_its_own_message(
    qtbot: QtBot, view: ChatView, msg_id: int, word: str, block_text: str
) -> None:
    """Reviewer: a hit in a reply selected the word in the question above it, and a
    match in a code block was never highlighted."""
    view.show_messages(ROMAN_CHAT)
    view.verticalScrollBar().setValue(view.verticalScrollBar().maximum())
    view.jump_to(msg_id, [word])
    cursor = view.textCursor()
    assert cursor.selectedText().lower() == word.lower()
    assert cursor.block().text() == block_text
    rect = view.cursorRect(cursor)
    assert view.viewport().rect().contains(rect.center())  # scrolled to it


def test_a_hit_whose_word_is_not_in_the_shown_text_still_selects_nothing_elsewhere(
    view: ChatView,
) -> None:
    view.show_messages(ROMAN_CHAT)
    view.jump_to(7, ["capital"])  # "capital" is only in earlier messages
    assert not view.textCursor().hasSelection()


LONG_LINE = "values = [" + ", ".join(str(i) for i in range(200)) + "]"
LONG_CODE = f"Code:\n\n```python\n{LONG_LINE}\ntoken = '{'a' * 400}'\n```\n"


def test_a_long_code_line_wraps_and_the_view_never_scrolls_sideways(
    qtbot: QtBot, view: ChatView
) -> None:
    """Reviewer: one long line in a code block made the whole chat scroll sideways."""
    QGuiApplication.clipboard().clear()
    view.show_messages([message(2, "assistant", LONG_CODE)])
    assert view.horizontalScrollBar().maximum() == 0
    assert view.document().size().width() <= view.viewport().width()
    assert LONG_LINE in view.plain_text()  # wrapped on screen, not in the text
    click_text(qtbot, view, "Copy")  # the code block's button comes first
    assert QGuiApplication.clipboard().text() == f"{LONG_LINE}\ntoken = '{'a' * 400}'\n"
    # While it streams (the fence still open) it wraps as well.
    view.begin_reply()
    view.append_reply(LONG_CODE[: LONG_CODE.rindex("```")])
    qtbot.waitUntil(lambda: LONG_LINE in view.plain_text().rpartition("Code:")[2])
    assert view.horizontalScrollBar().maximum() == 0


def test_a_reply_cut_by_the_full_context_says_so(qtbot: QtBot, view: ChatView) -> None:
    """Reviewer: it said "Cut off at the reply length limit." (stored as LENGTH)."""
    from dataclasses import replace

    cut = replace(message(2, "assistant", "Once upon a time"), status=MessageStatus.CONTEXT)
    view.show_messages([message(1, "user", "A story?"), cut])
    text = view.plain_text()
    assert "Cut off: the conversation filled the model's context window." in text
    assert "reply length limit" not in text
    assert "Continue…" in text  # which first asks how to make room
    view.begin_reply()  # the same note right after it streamed
    view.append_reply("Once upon a time")
    view.end_reply(MessageStatus.CONTEXT)
    assert view.plain_text().count("filled the model's context window") == 2


def test_each_reply_is_headed_by_the_model_that_wrote_it(view: ChatView) -> None:
    # Replies record their model (a file's path, a server's …/models/NAME); an earlier
    # reply keeps its own model's name after a switch, not the loaded model's.
    view.set_assistant_name("Qwen3.5 9B")
    older = replace(message(2, "assistant", "Hi."), model="/models/SmolLM2-135M.Q4_1.gguf")
    remote = replace(message(4, "assistant", "Yes."), model="http://box:8000/v1/models/llama3")
    legacy = message(6, "assistant", "Sure.")  # stored before replies recorded a model
    view.show_messages(
        [
            message(1, "user", "Hello"),
            older,
            message(3, "user", "And?"),
            remote,
            message(5, "user", "Ok"),
            legacy,
        ]
    )
    lines = view.toPlainText().splitlines()
    assert "SmolLM2-135M.Q4_1" in lines and "llama3" in lines and "Qwen3.5 9B" in lines
    assert lines.index("SmolLM2-135M.Q4_1") < lines.index("llama3") < lines.index("Qwen3.5 9B")
    # The app names files as the catalog does.
    view.set_model_namer(lambda path: "SmolLM2 135M" if path.endswith(".gguf") else "far")
    view.show_messages([older, remote])
    lines = view.toPlainText().splitlines()
    assert "SmolLM2 135M" in lines and "far" in lines


def test_a_window_taller_than_the_first_page_fills_with_earlier_messages(qtbot: QtBot) -> None:
    """With no scroll bar there is nothing to scroll up with: the view fills itself."""
    v = ChatView()
    qtbot.addWidget(v)
    v.resize(600, 300)
    many = [
        message(i, "user" if i % 2 else "assistant", f"message number {i}") for i in range(1, 401)
    ]
    v.show_messages(many)
    v.show()
    qtbot.waitExposed(v)
    assert "earlier messages" in v.plain_text()
    first = v.plain_text().count("message number")
    v.resize(600, 20000)  # a screen far taller than the first page
    qtbot.waitUntil(lambda: v.plain_text().count("message number") > first + EARLIER_PAGE - 1)
    qtbot.waitUntil(lambda: v.verticalScrollBar().maximum() > 0 or "earlier" not in v.plain_text())
    assert "message number 400" in v.plain_text()
