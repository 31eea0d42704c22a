"""The conversation, rendered into one QTextDocument.

Finished messages are rendered once to HTML and cached. A streaming reply is
append-only: text collects in a buffer and a 30 Hz timer commits the blocks
that are finished (``BlockSplitter``: up to a blank line or a closing code
fence) and re-renders only the block still open, so the work per frame does
not grow with the length of the reply or of the chat. Thinking streams as
plain text and folds into a "Thought for N s" line when the answer starts.

Links open only when clicked, and only http(s)/mailto; nothing remote is ever
loaded (``loadResource``).
"""

from __future__ import annotations

import html
from collections import OrderedDict
from collections.abc import Callable, Mapping

from PySide6.QtCore import Qt, QTimer, QUrl, Signal
from PySide6.QtGui import (
    QDesktopServices,
    QFocusEvent,
    QGuiApplication,
    QPaintEvent,
    QPalette,
    QResizeEvent,
    QShowEvent,
    QTextCursor,
)
from PySide6.QtWidgets import QTextBrowser, QWidget

from engine.history.types import MessageStatus, StoredMessage
from engine.types import ImagePart, Role, ToolCallPart, ToolResultPart
from ui.attachment_html import IMAGE_SCHEME, OPEN_IMAGE_SCHEME, attachments_html
from ui.chat_document import (
    StreamState,
    insert_blocks,
    plain_html,
)
from ui.chat_focus import (
    focus_first_in_sight,
    focused_link,
    message_span,
    paint_focus_ring,
    refocus,
)
from ui.chat_stream import append_thinking, fold_thinking, render_answer
from ui.citations import DocumentMarks, document_link
from ui.markdown import COPY_CODE_SCHEME, MarkdownRenderer
from ui.message_html import (
    ACTION_SCHEME,
    STATUS_NOTES,
    MessageAction,
    actions_html,
    context_divider_html,
    model_label,
    note_html,
    thinking_html,
)
from ui.tool_call_view import TOOL_SCHEME, ToolBlocks, place_tool_part

REPAINT_INTERVAL_MS = 33
# When a chat opens, only its end is rendered: at most SHOWN_AT_FIRST messages and
# about FIRST_SCREENS_CHARS of text (a tall screen and more), never fewer than
# SHOWN_AT_LEAST. Laying out a long chat's QTextDocument is most of what a large
# history adds to the start; the person sees its end anyway. Earlier messages
# come EARLIER_PAGE at a time when the person scrolls to the top (or all at once
# from the "Show N earlier messages" link, or when a search hit needs them).
SHOWN_AT_FIRST = 60
SHOWN_AT_LEAST = 4
FIRST_SCREENS_CHARS = 4000
EARLIER_PAGE = 60
_MESSAGE_CHROME_CHARS = 120  # a header and an action row cost about as much as this text
_CACHE_SIZE = 1024


def first_shown(messages: list[StoredMessage]) -> int:
    """The index of the first message rendered when a chat opens (see SHOWN_AT_FIRST)."""
    start, chars = len(messages), 0
    while start > 0 and len(messages) - start < SHOWN_AT_FIRST:
        if len(messages) - start >= SHOWN_AT_LEAST and chars >= FIRST_SCREENS_CHARS:
            break
        start -= 1
        chars += len(messages[start].content) + _MESSAGE_CHROME_CHARS
    return start


class ChatView(QTextBrowser):
    action_requested = Signal(object, int)  # MessageAction, message id
    earlier_requested = Signal()
    image_open_requested = Signal(str)  # an attached image's sha256: show it larger
    citation_requested = Signal(int, int)  # reply id, citation number
    document_requested = Signal(int, str)  # message id, sha256 of a document on it

    def __init__(self, parent: QWidget | None = None, *, dark: bool = False) -> None:
        super().__init__(parent)
        self.setObjectName("chat_view")
        self.setAccessibleName("Conversation")
        self.setAccessibleDescription(
            "Tab and Shift+Tab move between the actions under each message; "
            "Enter or Space activates the one in focus."
        )
        self.setOpenLinks(False)
        self.setOpenExternalLinks(False)
        self.document().setDocumentMargin(16)
        self.setUndoRedoEnabled(False)
        self.anchorClicked.connect(self._on_anchor_clicked)
        self._renderer = MarkdownRenderer(dark)
        self._assistant_name = "Assistant"
        # A reply's header names the model that wrote it (StoredMessage.model), not
        # the one loaded now; the app gives a better namer (the catalog's names).
        self._name_of: Callable[[str], str] = model_label
        # An attached image's thumbnail (QImage) by sha256; the app reads the store.
        self._image_source: Callable[[str], object] = lambda _sha: None
        self._codes: dict[int, str] = {}  # copy-code id -> code (ids live in cached HTML)
        self._code_ids: dict[str, int] = {}
        self._html_cache: OrderedDict[tuple[object, ...], str] = OrderedDict()
        self._marks = DocumentMarks()  # documents on questions, passages of replies
        self._messages: list[StoredMessage] = []
        self._shown_from = 0
        self._expanded_thinking: set[int] = set()
        self._tools = ToolBlocks(
            lambda: self._renderer.palette, lambda t: self._renderer.render(t, self._register_code)
        )
        self._context_start: int | None = None  # the first message the model still reads
        self._stream: StreamState | None = None
        self._timer = QTimer(self)
        self._timer.setInterval(REPAINT_INTERVAL_MS)
        self._timer.timeout.connect(self._flush)
        # At the end of the chat, and staying there while the layout settles (Qt lays a
        # document out lazily: the range grows after setHtml) until anything scrolls up.
        self._follow_end = False
        self.verticalScrollBar().rangeChanged.connect(self._on_range_changed)
        self.verticalScrollBar().valueChanged.connect(self._on_scrolled)

    # --- configuration ----------------------------------------------------------------
    def set_context_start(self, msg_id: int | None) -> None:
        """Mark the messages before ``msg_id`` as no longer read by the model (a
        divider above it); None: it reads them all. Shown from the next rebuild."""
        self._context_start = msg_id

    def set_assistant_name(self, name: str) -> None:
        if name != self._assistant_name:
            self._assistant_name = name
            if self._stream is None and self._messages:
                self._rebuild_keeping_scroll()

    def set_model_namer(self, name_of: Callable[[str], str]) -> None:
        """How a stored reply's ``model`` is named in its header ("" or a name)."""
        self._name_of = name_of
        self._html_cache.clear()

    def set_image_source(self, source: Callable[[str], object]) -> None:
        """Where thumbnails of attached images come from (sha256 -> QImage or None)."""
        self._image_source = source

    def set_dark(self, dark: bool) -> None:
        self._renderer = MarkdownRenderer(dark)
        self._html_cache.clear()
        if self._stream is None and self._messages:
            self._rebuild_keeping_scroll()

    def _rebuild_keeping_scroll(self) -> None:
        bar = self.verticalScrollBar()
        at_bottom, value = self._at_bottom() or self._follow_end, bar.value()
        self._rebuild()
        bar.setValue(bar.maximum() if at_bottom else value)
        self._follow_end = at_bottom

    # --- whole conversations ---------------------------------------------------------------
    def show_messages(self, messages: list[StoredMessage], *, keep_scroll: bool = False) -> None:
        """Show a conversation. ``keep_scroll``: the same chat re-shown (after a
        reply was saved): stay where the person was unless they were at the bottom."""
        self._stop_stream()
        at_bottom = self._at_bottom() or self._follow_end
        value = self.verticalScrollBar().value()
        if not keep_scroll:
            self._shown_from = first_shown(messages)
        self._messages = list(messages)
        self._rebuild(nearest=False)
        if keep_scroll and not at_bottom:
            self.verticalScrollBar().setValue(value)
        else:
            self._scroll_to_bottom()
            self._follow_end = True
        if self._shown_from and self.isVisible():
            QTimer.singleShot(0, self._fill_view)

    def show_earlier(self) -> None:
        """Render the rest of a long chat (the top of the document grows)."""
        if self._shown_from:
            self._shown_from = 0
            self._rebuild()

    def _show_earlier_page(self) -> None:
        """The person scrolled to the top: render EARLIER_PAGE more messages above,
        and keep the message that was at the top where it was."""
        if not self._shown_from or self._stream is not None or self._follow_end:
            return
        if self.verticalScrollBar().value() > 0:  # scrolled away again meanwhile
            return
        top = self._messages[self._shown_from].id
        self._shown_from = max(0, self._shown_from - EARLIER_PAGE)
        self._rebuild()
        self.scrollToAnchor(f"m{top}")

    def add_message(self, role: Role, content: str) -> None:
        """Append a finished message that is not (yet) in the store's list."""
        insert_blocks(self._end_cursor(), self._header_html(role) + self._body_html(role, content))
        self._scroll_to_bottom()

    def _rebuild(self, *, nearest: bool = True) -> None:
        """Render the shown messages again. A link in keyboard focus keeps it: the
        same link, or with ``nearest`` (a fold, "show earlier", a theme change) the
        nearest like it. A new set of messages (``show_messages``) keeps only the
        very same link: after a message action the controller decides where the
        focus goes, and a neighbouring Delete is never where a person expects it."""
        focused = focused_link(self) if self.hasFocus() else None
        parts: list[str] = []
        if self._shown_from:
            parts.append(
                f'<p align="center"><a href="{ACTION_SCHEME}:earlier/0">'
                f"Show {self._shown_from} earlier messages</a></p>"
            )
        last = self._messages[-1].id if self._messages else None
        for m in self._messages[self._shown_from :]:
            if m.id == self._context_start and m is not self._messages[0]:
                parts.append(context_divider_html(self._muted))
            parts.append(self._message_html(m, m.id == last))
        self.setHtml("".join(parts))
        if focused is not None:
            refocus(self, *focused, nearest=nearest)

    def _message_html(self, msg: StoredMessage, is_last: bool) -> str:
        thinking, thinking_ms = msg.thinking, msg.thinking_ms
        expanded = msg.id in self._expanded_thinking
        key = (
            msg, expanded, is_last, self._assistant_name,
            self._marks.key(msg), self._tools.keys_of(msg),
        )  # fmt: skip
        cached = self._html_cache.get(key)
        if cached is None:
            # A reply from before replies recorded their model is named after today's.
            name = self._name_of(msg.model) if msg.role == "assistant" and msg.model else ""
            parts = [self._header_html(msg.role, anchor=f"m{msg.id}", name=name)]
            if thinking:
                parts.append(thinking_html(self._muted, msg.id, thinking, thinking_ms, expanded))
            if msg.attachments:  # its images (its documents: the marks below)
                parts.append(attachments_html(self._muted, msg.attachments))
            if msg.parts:  # a reply that called tools: its text, calls and results
                body = self._tools.message_html(msg)
            else:
                body = self._body_html(msg.role, msg.content)
            parts.append(self._marks.decorate(body, msg, self._muted))
            note = STATUS_NOTES.get(msg.status)
            if note:
                parts.append(note_html(self._muted, note))
            if msg.content or msg.attachments or msg.role == "assistant":
                parts.append(actions_html(self._muted, msg, is_last))
            cached = "".join(parts)
            self._html_cache[key] = cached
            if len(self._html_cache) > _CACHE_SIZE:
                self._html_cache.popitem(last=False)
        else:
            self._html_cache.move_to_end(key)
        return cached

    # --- streaming ----------------------------------------------------------------------
    def begin_reply(self) -> None:
        self._stop_stream()
        insert_blocks(self._end_cursor(), self._header_html("assistant"))
        stream = StreamState()
        stream.open_pos = self._end_cursor().position()
        self._stream = stream
        self._timer.start()
        self._scroll_to_bottom()

    def append_reply(self, text: str) -> None:
        if self._stream is not None:
            self._stream.pending.append(text)

    def append_thinking(self, text: str) -> None:
        if self._stream is not None:
            self._stream.pending_thinking.append(text)

    def end_reply(self, status: MessageStatus) -> None:
        stream = self._stream
        if stream is None:
            return
        self._flush(final=True)
        self._stop_stream()
        note = STATUS_NOTES.get(status)
        if note:
            at_bottom = self._at_bottom()
            insert_blocks(self._end_cursor(), note_html(self._muted, note))
            if at_bottom:
                self._scroll_to_bottom()

    def add_tool_part(self, part: ToolCallPart | ToolResultPart) -> None:
        """A call the streaming reply made (shown running), or its result (the block
        is drawn again, finished); the reply's text goes on below it."""
        stream = self._stream
        if stream is None:
            return
        self._flush(final=True)
        at_bottom = self._at_bottom()
        place_tool_part(self.document(), stream, part, self._tools.live_html)
        if at_bottom:
            self._scroll_to_bottom()

    def streamed_text_length(self) -> int:
        """Characters of the current reply's answer already on screen."""
        return len(self._stream.text) if self._stream else 0

    def _flush(self, final: bool = False) -> None:
        stream = self._stream
        if stream is None or not (stream.pending or stream.pending_thinking or final):
            return
        at_bottom = self._at_bottom()
        if stream.pending_thinking:
            color = self.palette().color(QPalette.ColorRole.PlaceholderText)
            text = "".join(stream.pending_thinking)
            append_thinking(self.document(), stream, text, muted=self._muted, color=color)
            stream.pending_thinking.clear()
        if stream.pending or final:
            if stream.think_pos is not None:
                fold_thinking(self.document(), stream, muted=self._muted)
            stream.text += "".join(stream.pending)
            stream.pending.clear()
            render_answer(self.document(), stream, self._renderer, self._register_code, final)
        if at_bottom:
            self._scroll_to_bottom()

    def _stop_stream(self) -> None:
        self._timer.stop()
        self._stream = None

    # --- pieces of HTML -----------------------------------------------------------------------
    def _header_html(self, role: str, *, anchor: str = "", name: str = "") -> str:
        """The name above a message. ``anchor`` names it for ``jump_to``: inside the
        paragraph, because Qt drops an empty ``<a name>`` between blocks (all but
        the document's first), and a search hit then landed on the wrong message."""
        accent = self.palette().color(QPalette.ColorRole.Highlight).name()
        names = {"user": "You", "assistant": self._assistant_name, "system": "System"}
        name = name or names.get(role, role)
        color = (
            accent if role == "assistant" else self.palette().color(QPalette.ColorRole.Text).name()
        )
        name_html = f'<a name="{anchor}"></a>' if anchor else ""
        return (
            f'<p style="margin-top:14px; margin-bottom:2px">{name_html}'
            f'<b style="color:{color}">{html.escape(name)}</b></p>'
        )

    @property
    def _muted(self) -> str:
        return self._renderer.palette.muted

    def _body_html(self, role: str, content: str) -> str:
        if role == "assistant":
            return self._renderer.render(content, self._register_code)
        return plain_html(content)  # what the person typed is shown as typed

    def _register_code(self, code: str) -> int:
        # Stable ids: cached message HTML keeps the ids it was rendered with.
        index = self._code_ids.get(code)
        if index is None:
            index = self._code_ids[code] = len(self._codes)
            self._codes[index] = code
        return index

    # --- links ----------------------------------------------------------------------------------
    def set_sources(
        self,
        sources: Mapping[int, tuple[tuple[int, str], ...]],
        documents: Mapping[str, str] | None = None,
    ) -> None:
        """The passages each reply (by id) was given, as (number, "report.pdf, page 4"),
        and what to say of each document (by sha256: "12 pages · Auto: whole")."""
        if self._marks.update(sources, documents):
            self._rebuild_keeping_scroll()

    def _on_anchor_clicked(self, url: QUrl) -> None:
        scheme = url.scheme()
        if link := document_link(scheme, url.path()):  # ui/citations.py
            kind, msg_id, what = link
            if kind == "cite":
                self.citation_requested.emit(msg_id, int(what))
            else:
                self.document_requested.emit(msg_id, what)
            return
        if scheme == COPY_CODE_SCHEME:
            code = self._codes.get(int(url.path() or -1))
            if code is not None:
                QGuiApplication.clipboard().setText(code)
            return
        if scheme == ACTION_SCHEME:
            name, _, ident = url.path().partition("/")
            try:
                action = MessageAction(name)
            except ValueError:  # not a link this view made
                return
            if action is MessageAction.EARLIER:
                self.show_earlier()
                self.earlier_requested.emit()
            elif action is MessageAction.TOGGLE_THINKING:
                self._toggle_thinking(int(ident))
            elif action is MessageAction.COPY:
                msg = next((m for m in self._messages if m.id == int(ident)), None)
                if msg is not None:
                    QGuiApplication.clipboard().setText(msg.content)
            self.action_requested.emit(action, int(ident or 0))
            return
        if scheme == OPEN_IMAGE_SCHEME:
            self.image_open_requested.emit(url.path())
            return
        if scheme == TOOL_SCHEME:
            self._tools.toggle(url.path())
            if self._stream is None:
                self._rebuild_keeping_scroll()
            return
        if scheme in ("http", "https", "mailto"):
            QDesktopServices.openUrl(url)

    def jump_to(self, msg_id: int, words: list[str]) -> None:
        """Scroll to a message and select the first of ``words`` in it (search hits):
        only in that message, never in the one before or after it."""
        if self._shown_from and all(m.id != msg_id for m in self._messages[self._shown_from :]):
            self.show_earlier()
        self.scrollToAnchor(f"m{msg_id}")
        span = message_span(self.document(), msg_id)
        if span is None:
            return
        start, end = span
        doc = self.document()
        hits = [doc.find(word, start) for word in words if word]
        hits = [h for h in hits if not h.isNull() and h.selectionEnd() <= end]
        if hits:
            self.setTextCursor(min(hits, key=lambda h: h.selectionStart()))  # the highlight
            self.ensureCursorVisible()

    def _toggle_thinking(self, msg_id: int) -> None:
        self._expanded_thinking ^= {msg_id}
        if self._stream is None:
            self._rebuild_keeping_scroll()

    # --- keyboard: Tab and Shift+Tab move through the links, Enter activates -------------
    def focusInEvent(self, event: QFocusEvent) -> None:
        """Tabbing in lands on the first (Shift+Tab: last) link in sight, not on
        nothing: QTextBrowser would otherwise search from wherever its cursor was,
        and Shift+Tab from the top would leave at once, past every link."""
        super().focusInEvent(event)
        reason = event.reason()
        if reason not in (Qt.FocusReason.TabFocusReason, Qt.FocusReason.BacktabFocusReason):
            return
        focus_first_in_sight(self, reason == Qt.FocusReason.TabFocusReason)

    def showEvent(self, event: QShowEvent) -> None:
        # QTextEdit shows its cursor on the first show: the top of the chat.
        follow = self._follow_end
        super().showEvent(event)
        if follow:
            self._scroll_to_bottom()
            self._follow_end = True
        QTimer.singleShot(0, self._fill_view)

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        if event.size().height() > event.oldSize().height() and self._shown_from:
            QTimer.singleShot(0, self._fill_view)

    def _fill_view(self) -> None:
        """A window taller than the first page: no scroll bar to scroll up with, so
        render earlier messages until the view is full (or the chat is all there)."""
        if not self._shown_from or self._stream is not None or not self.isVisible():
            return
        if self.verticalScrollBar().maximum() > 0:
            return
        self._shown_from = max(0, self._shown_from - EARLIER_PAGE)
        self._rebuild()
        self._scroll_to_bottom()
        self._follow_end = True
        QTimer.singleShot(0, self._fill_view)  # until full: a page may not be enough

    def _on_range_changed(self, _minimum: int, maximum: int) -> None:
        if self._follow_end:
            self.verticalScrollBar().setValue(maximum)

    def _on_scrolled(self, value: int) -> None:
        if value < self.verticalScrollBar().maximum() - 4:  # up, by the person or the code
            self._follow_end = False
        if value == 0 and self._shown_from and not self._follow_end and self.isVisible():
            # After this event: a rebuild inside the scroll bar's own signal would
            # re-enter it.
            QTimer.singleShot(0, self._show_earlier_page)

    def paintEvent(self, event: QPaintEvent) -> None:
        """A clear ring around the link in keyboard focus (Qt's own is a faint dotted line)."""
        super().paintEvent(event)
        paint_focus_ring(self)

    def loadResource(self, kind: int, url: QUrl | str) -> object:
        """Never fetch anything: no remote images, no local files from model output.
        Only the thumbnails of images attached to the messages shown (issue 13)."""
        url = QUrl(url)
        if url.scheme() == IMAGE_SCHEME:
            sha = url.path()
            shown = (p for m in self._messages for p in m.attachments)
            if any(isinstance(p, ImagePart) and p.sha256 == sha for p in shown):
                return self._image_source(sha)
        return None

    # --- scrolling and helpers ------------------------------------------------------------------
    def _end_cursor(self) -> QTextCursor:
        cursor = QTextCursor(self.document())
        cursor.movePosition(QTextCursor.MoveOperation.End)
        return cursor

    def _at_bottom(self) -> bool:
        bar = self.verticalScrollBar()
        return bar.value() >= bar.maximum() - 4

    def _scroll_to_bottom(self) -> None:
        bar = self.verticalScrollBar()
        bar.setValue(bar.maximum())

    def plain_text(self) -> str:
        return self.document().toPlainText()
