"""Secondary text is readable in both themes: the muted colour the tool widgets (the
permission question's description and footer, the call blocks' labels, the document
chip) use passes WCAG AA (4.5:1) on every background it is drawn on. Real palettes,
real widgets, the contrast formula of WCAG 2.1."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication, QLabel
from pytestqt.qtbot import QtBot

from engine.types import ToolCallPart
from ui.markdown import MarkdownRenderer
from ui.theme import apply_theme
from ui.tool_permission import ToolPermissionDialog

AA = 4.5


def luminance(color: QColor) -> float:
    def channel(v: int) -> float:
        c = v / 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    return (
        0.2126 * channel(color.red())
        + 0.7152 * channel(color.green())
        + 0.0722 * channel(color.blue())
    )


def contrast(fg: QColor, bg: QColor) -> float:
    hi, lo = sorted((luminance(fg), luminance(bg)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


@pytest.fixture(params=["light", "dark"])
def theme(request: pytest.FixtureRequest, qapp: QApplication) -> Iterator[str]:
    before, sheet = qapp.palette(), qapp.styleSheet()
    apply_theme(qapp, request.param)
    yield request.param
    qapp.setPalette(before)
    qapp.setStyleSheet(sheet)


def test_muted_text_passes_aa_on_the_window_and_the_fields(theme: str, qapp: QApplication) -> None:
    p = qapp.palette()
    muted = p.color(QPalette.ColorRole.PlaceholderText)
    assert muted.alpha() == 255  # an opaque colour: its contrast is what is measured
    for role in (QPalette.ColorRole.Window, QPalette.ColorRole.Base):
        assert contrast(muted, p.color(role)) >= AA, (theme, role)


def test_the_chat_views_muted_text_passes_aa_on_the_reply_and_the_tool_blocks(
    theme: str, qapp: QApplication
) -> None:
    """Call blocks draw their labels ("Arguments", "Result", the fold note) in the
    renderer's muted colour on the code background; notes sit on the view's base."""
    pal = MarkdownRenderer(dark=theme == "dark").palette
    muted = QColor(pal.muted)
    assert contrast(muted, QColor(pal.code_bg)) >= AA
    assert contrast(muted, qapp.palette().color(QPalette.ColorRole.Base)) >= AA


def test_the_permission_questions_description_and_footer_are_readable(
    theme: str, qtbot: QtBot, qapp: QApplication
) -> None:
    call = ToolCallPart("call_1", "get_current_time", {"timezone": "Asia/Tokyo"}, server="time")
    dialog = ToolPermissionDialog(call, "time", "Get current time in a specific timezone")
    qtbot.addWidget(dialog)
    dialog.show()
    labels = {
        label.text(): label
        for label in dialog.findChildren(QLabel)
        if label.text().startswith(("Get current time", "Nothing runs"))
    }
    assert len(labels) == 2
    for label in labels.values():
        assert label.isEnabled()  # not greyed out: disabled text is 1.6:1 on light
        fg = label.palette().color(label.foregroundRole())
        bg = dialog.palette().color(QPalette.ColorRole.Window)
        assert contrast(fg, bg) >= AA, (theme, label.text())
