"""Light and dark themes. "system" follows the OS color scheme."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QGuiApplication, QPalette
from PySide6.QtWidgets import QApplication, QWidget

THEMES = ("system", "light", "dark")

# Secondary text (descriptions, hints, notes): the palette's PlaceholderText and
# ui.markdown's ``muted``. Both pass WCAG AA (4.5:1) on the window, the text
# fields and the code/tool block background of their theme (tests/gui/test_theme_contrast.py).
# A disabled label is no substitute: Fusion's light one is 1.6:1.
MUTED_LIGHT = "#66615a"
MUTED_DARK = "#9a9ea6"

_BANNER_QSS = """
#error_banner { background: %(bg)s; border: 1px solid %(border)s; border-radius: 6px; }
#error_banner QLabel { color: %(fg)s; }
#context_meter[warn="true"]::chunk { background: %(border)s; }
"""


def _dark_palette() -> QPalette:
    p = QPalette()
    base, window, text = QColor(30, 31, 34), QColor(43, 45, 49), QColor(226, 228, 232)
    for group in (QPalette.ColorGroup.Active, QPalette.ColorGroup.Inactive):
        p.setColor(group, QPalette.ColorRole.Window, window)
        p.setColor(group, QPalette.ColorRole.WindowText, text)
        p.setColor(group, QPalette.ColorRole.Base, base)
        p.setColor(group, QPalette.ColorRole.AlternateBase, window)
        p.setColor(group, QPalette.ColorRole.Text, text)
        p.setColor(group, QPalette.ColorRole.Button, QColor(56, 58, 64))
        p.setColor(group, QPalette.ColorRole.ButtonText, text)
        p.setColor(group, QPalette.ColorRole.ToolTipBase, window)
        p.setColor(group, QPalette.ColorRole.ToolTipText, text)
        p.setColor(group, QPalette.ColorRole.Highlight, QColor(232, 131, 58))
        p.setColor(group, QPalette.ColorRole.HighlightedText, QColor(20, 20, 20))
        p.setColor(group, QPalette.ColorRole.PlaceholderText, QColor(MUTED_DARK))
        p.setColor(group, QPalette.ColorRole.Link, QColor(240, 160, 90))
    disabled = QColor(120, 122, 128)
    for role in (
        QPalette.ColorRole.Text,
        QPalette.ColorRole.ButtonText,
        QPalette.ColorRole.WindowText,
    ):
        p.setColor(QPalette.ColorGroup.Disabled, role, disabled)
    p.setColor(QPalette.ColorGroup.Disabled, QPalette.ColorRole.Base, base)
    p.setColor(QPalette.ColorGroup.Disabled, QPalette.ColorRole.Window, window)
    p.setColor(QPalette.ColorGroup.Disabled, QPalette.ColorRole.Button, QColor(48, 50, 55))
    return p


def _light_palette() -> QPalette:
    p = QApplication.style().standardPalette()
    for group in (QPalette.ColorGroup.Active, QPalette.ColorGroup.Inactive):
        p.setColor(group, QPalette.ColorRole.Highlight, QColor(196, 90, 22))
        p.setColor(group, QPalette.ColorRole.HighlightedText, QColor(255, 255, 255))
        p.setColor(group, QPalette.ColorRole.PlaceholderText, QColor(MUTED_LIGHT))
    return p


def mute(widget: QWidget) -> None:
    """Show ``widget``'s text in the theme's muted colour (readable, unlike disabled)."""
    widget.setForegroundRole(QPalette.ColorRole.PlaceholderText)


def is_dark(mode: str) -> bool:
    if mode == "dark":
        return True
    if mode == "light":
        return False
    return QGuiApplication.styleHints().colorScheme() == Qt.ColorScheme.Dark


def apply_theme(app: QApplication, mode: str = "system") -> bool:
    """Apply ``mode``; returns whether the result is dark."""
    if mode not in THEMES:
        mode = "system"
    app.setStyle("Fusion")
    dark = is_dark(mode)
    app.setPalette(_dark_palette() if dark else _light_palette())
    colors = (
        {"bg": "#4a2a22", "border": "#8a4a3a", "fg": "#f6d9d0"}
        if dark
        else {"bg": "#fdecea", "border": "#e0a69c", "fg": "#611a15"}
    )
    app.setStyleSheet(_BANNER_QSS % colors)
    return dark
