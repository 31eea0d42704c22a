"""Every action in the chat reachable and usable without a mouse."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QGuiApplication
from PySide6.QtWidgets import QApplication, QLineEdit, QVBoxLayout, QWidget
from pytestqt.qtbot import QtBot

from engine.history.types import MessageStatus, StoredMessage
from ui.chat_focus import focused_link
from ui.chat_view import EARLIER_PAGE, SHOWN_AT_FIRST, ChatView
from ui.main_window import MainWindow

REPLY = "The last reply, with `code`."
CODE_REPLY = "Here:\n\n```python\nprint('hi')\n```\n"


def message(mid: int, role: str, content: str, **kw: object) -> StoredMessage:
    msg = StoredMessage(mid, 1, role, content, MessageStatus.COMPLETE, 0.0)  # type: ignore[arg-type]
    return replace(msg, **kw)  # type: ignore[arg-type]


def focused_href(view: ChatView) -> str | None:
    link = focused_link(view) if view.hasFocus() else None
    return link[1] if link else None


def press(
    qtbot: QtBot, key: Qt.Key, modifier: Qt.KeyboardModifier = Qt.KeyboardModifier.NoModifier
) -> None:
    widget = QApplication.focusWidget()
    assert widget is not None
    qtbot.keyClick(widget, key, modifier)


@pytest.fixture
def window(qtbot: QtBot) -> MainWindow:
    w = MainWindow()
    qtbot.addWidget(w)
    w.show()
    qtbot.waitExposed(w)
    w.activateWindow()
    return w


def test_tab_to_copy_under_the_last_reply_and_press_enter(qtbot: QtBot, window: MainWindow) -> None:
    view = window.chat_view
    view.show_messages(
        [
            message(1, "user", "Show me code"),
            message(2, "assistant", CODE_REPLY),
            message(3, "user", "And now?"),
            message(4, "assistant", REPLY),
        ]
    )
    QGuiApplication.clipboard().clear()
    window.composer.setFocus()
    qtbot.waitUntil(window.composer.hasFocus)
    for _ in range(60):  # Tab on from the message box, round the window
        press(qtbot, Qt.Key.Key_Tab)
        if focused_href(view) == "hearth-action:copy/4":
            break
    else:
        pytest.fail("Tab never reached Copy under the last reply")
    with qtbot.waitSignal(view.action_requested) as requested:
        press(qtbot, Qt.Key.Key_Return)
    assert requested.args == ["copy", 4]
    assert QGuiApplication.clipboard().text() == REPLY


def test_shift_tab_from_the_message_box_lands_on_the_last_action(
    qtbot: QtBot, window: MainWindow
) -> None:
    view = window.chat_view
    view.show_messages([message(1, "user", "Hello"), message(2, "assistant", REPLY)])
    window.composer.setFocus()
    qtbot.waitUntil(window.composer.hasFocus)
    for _ in range(5):
        press(qtbot, Qt.Key.Key_Tab, Qt.KeyboardModifier.ShiftModifier)
        if view.hasFocus():
            break
    # Straight onto the reply's last action, not onto nothing (and not past every link).
    assert focused_href(view) == "hearth-action:delete/2"
    press(qtbot, Qt.Key.Key_Tab, Qt.KeyboardModifier.ShiftModifier)
    assert focused_href(view) == "hearth-action:regenerate/2"


@pytest.fixture
def framed(qtbot: QtBot) -> Iterator[tuple[QLineEdit, ChatView, QLineEdit]]:
    """The view between two fields, so Tab can come in and go out."""
    box = QWidget()
    qtbot.addWidget(box)
    layout = QVBoxLayout(box)
    above, view, below = QLineEdit(), ChatView(), QLineEdit()
    for w in (above, view, below):
        layout.addWidget(w)
    box.resize(700, 600)
    box.show()
    qtbot.waitExposed(box)
    box.activateWindow()
    yield above, view, below  # (keeps `box`, which owns them, alive)


def long_chat() -> list[StoredMessage]:
    msgs = [
        message(i, "user" if i % 2 else "assistant", f"message {i}")
        # Longer than a first page plus the page that scrolling to the top adds.
        for i in range(1, SHOWN_AT_FIRST + EARLIER_PAGE + 11)
    ]
    last = len(msgs)
    msgs[-3] = message(last - 2, "assistant", CODE_REPLY, thinking="Let me see.", thinking_ms=3000)
    msgs[-1] = message(
        last, "assistant", REPLY, status=MessageStatus.LENGTH, variant_index=1, variant_count=3
    )
    return msgs


def tab_through(qtbot: QtBot, view: ChatView, limit: int = 200) -> list[str]:
    hrefs: list[str] = []
    for _ in range(limit):
        press(qtbot, Qt.Key.Key_Tab)
        if not view.hasFocus():
            return hrefs
        href = focused_href(view)
        assert href, "a Tab stop inside the view with no link in focus"
        hrefs.append(href)
    pytest.fail("Tab never left the view")


def test_every_kind_of_action_is_a_tab_stop(
    qtbot: QtBot, framed: tuple[QLineEdit, ChatView, QLineEdit]
) -> None:
    above, view, below = framed
    msgs = long_chat()
    view.show_messages(msgs)
    view.verticalScrollBar().setValue(0)  # from the top, so Tab starts at the first link
    above.setFocus()
    qtbot.waitUntil(above.hasFocus)
    hrefs = tab_through(qtbot, view)
    assert below.hasFocus()  # and out again at the end
    actions = {h.split(":")[1].split("/")[0] for h in hrefs if h.startswith("hearth-action")}
    assert {"earlier", "copy", "edit", "regenerate", "continue", "delete"} <= actions
    assert {"toggle-thinking", "prev", "next"} <= actions
    assert any(h.startswith("hearth-copy-code:") for h in hrefs)
    assert len(hrefs) == len(set(hrefs))  # each once, in order


def focus_link(qtbot: QtBot, view: ChatView, href_start: str) -> None:
    for _ in range(300):
        press(qtbot, Qt.Key.Key_Tab)
        href = focused_href(view)
        if href and href.startswith(href_start):
            return
    pytest.fail(f"no link {href_start}")


def test_enter_activates_each_kind_and_focus_stays_near(
    qtbot: QtBot, framed: tuple[QLineEdit, ChatView, QLineEdit]
) -> None:
    above, view, _below = framed
    msgs = long_chat()
    view.show_messages(msgs)
    view.verticalScrollBar().setValue(0)
    above.setFocus()
    qtbot.waitUntil(above.hasFocus)

    # The thinking fold opens and closes, and the fold keeps the focus.
    thinking_id = msgs[-3].id
    focus_link(qtbot, view, f"hearth-action:toggle-thinking/{thinking_id}")
    press(qtbot, Qt.Key.Key_Return)
    assert "Let me see." in view.plain_text()
    assert focused_href(view) == f"hearth-action:toggle-thinking/{thinking_id}"
    press(qtbot, Qt.Key.Key_Return)
    assert "Let me see." not in view.plain_text()

    # The code block's Copy.
    QGuiApplication.clipboard().clear()
    focus_link(qtbot, view, "hearth-copy-code:")
    press(qtbot, Qt.Key.Key_Return)
    assert QGuiApplication.clipboard().text() == "print('hi')\n"

    # Versions and Continue ask the controller.
    for action in ("prev", "next", "continue"):
        focus_link(qtbot, view, f"hearth-action:{action}/")
        with qtbot.waitSignal(view.action_requested) as requested:
            press(qtbot, Qt.Key.Key_Return)
        assert requested.args == [action, msgs[-1].id]

    # "Show N earlier": the earlier messages appear and the focus goes on into them.
    view.show_messages(msgs)
    view.verticalScrollBar().setValue(0)
    above.setFocus()
    qtbot.waitUntil(above.hasFocus)
    focus_link(qtbot, view, "hearth-action:earlier/")
    press(qtbot, Qt.Key.Key_Return)
    assert "message 1\n" in view.plain_text()
    assert focused_href(view) is not None  # not dropped to nowhere


def test_the_focused_link_has_a_visible_ring(
    qtbot: QtBot, framed: tuple[QLineEdit, ChatView, QLineEdit]
) -> None:
    above, view, _below = framed
    view.show_messages([message(1, "assistant", REPLY)])
    ring = view.palette().color(view.palette().ColorRole.Highlight)

    def ring_pixels() -> int:
        image = view.viewport().grab().toImage()
        return sum(
            1
            for y in range(image.height())
            for x in range(0, image.width(), 2)
            if _close(QColor(image.pixel(x, y)), ring)
        )

    above.setFocus()
    qtbot.waitUntil(above.hasFocus)
    unfocused = ring_pixels()  # the assistant's name is in that color too
    press(qtbot, Qt.Key.Key_Tab)
    assert focused_href(view) == "hearth-action:copy/1"
    assert ring_pixels() > unfocused + 20


def _close(a: QColor, b: QColor) -> bool:
    return abs(a.red() - b.red()) + abs(a.green() - b.green()) + abs(a.blue() - b.blue()) < 40


def test_controls_have_accessible_names(window: MainWindow) -> None:
    unnamed = [
        f"{type(w).__name__} {w.objectName()!r}"
        for w in window.findChildren(QWidget)
        if w.isVisible()
        and w.focusPolicy() & Qt.FocusPolicy.TabFocus
        and not w.accessibleName()
        and w.parent() is not None
        and not w.objectName().startswith("qt_")
    ]
    assert unnamed == []
