"""The bar above a conversation: its title, its own thinking switch and system
prompt, and a meter of how full the model's context window is."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QToolButton, QWidget

from engine.types import WARN_FRACTION

WARN_AT = WARN_FRACTION  # the meter turns to a warning from here


class ChatToolbar(QWidget):
    thinking_toggled = Signal(bool)
    system_prompt_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("chat_toolbar")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(4, 0, 4, 0)
        self.title = QLabel("New chat")
        self.title.setObjectName("chat_title")
        self.title.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        font = self.title.font()
        font.setBold(True)
        self.title.setFont(font)
        self.thinking = QToolButton()
        self.thinking.setObjectName("thinking_toggle")
        self.thinking.setText("Think")
        self.thinking.setAccessibleName("Thinking")
        self.thinking.setToolTip("Let the model think before it answers (this chat only)")
        self.thinking.setCheckable(True)
        self.thinking.toggled.connect(self.thinking_toggled)
        self.system = QToolButton()
        self.system.setObjectName("system_prompt_button")
        self.system.setText("System prompt…")
        self.system.setAccessibleName("System prompt for this chat")
        self.system.clicked.connect(self.system_prompt_requested)
        self.meter = QProgressBar()
        self.meter.setObjectName("context_meter")
        self.meter.setAccessibleName("Context used")
        self.meter.setFixedWidth(150)
        self.meter.setTextVisible(True)
        self.meter.setMaximum(1)
        self.meter.setValue(0)
        self.meter.setFormat("Context")
        # Centred in every style: the warning color is a style sheet (ui/theme.py), and
        # a style-sheet progress bar draws its text where alignment() says (top left).
        self.meter.setAlignment(Qt.AlignmentFlag.AlignCenter)
        layout.addWidget(self.title, 1)
        layout.addWidget(self.thinking)
        layout.addWidget(self.system)
        layout.addWidget(self.meter)
        self.set_thinking_available(False)
        self._known = True  # the model's context window is known (a server may not say)
        # The meter's last figures (used, total, warn, reserve), to show them again.
        self._shown: tuple[int, int, bool | None, int] = (0, 1, None, 0)

    def add_tool(self, widget: QWidget) -> None:
        """Put ``widget`` (e.g. the model picker) before the system prompt button."""
        layout = self.layout()
        assert isinstance(layout, QHBoxLayout)
        layout.insertWidget(layout.indexOf(self.system), widget)

    def set_title(self, title: str) -> None:
        self.title.setText(title)

    def set_thinking_available(self, available: bool) -> None:
        self.thinking.setVisible(available)

    def set_thinking(self, on: bool) -> None:
        blocked = self.thinking.blockSignals(True)
        self.thinking.setChecked(on)
        self.thinking.blockSignals(blocked)

    def set_context(
        self,
        used: int,
        total: int,
        *,
        warn: bool | None = None,
        reserve: int = 0,
        attached: int = 0,
    ) -> None:
        """Show ``used`` of ``total`` tokens. It warns from 80 %, or when ``warn``
        says so (the next reply's ``reserve`` no longer fits). Past 100 % the bar
        stays full and the text says "Context full (165%)". A window that is not
        known (``set_context_known``) shows the tokens in use, not a share of a guess."""
        self._shown = (used, total, warn, reserve)
        if not self._known:
            self._show_tokens(max(0, used))
            return
        total = max(total, 1)
        used = max(0, used)
        self.meter.setMaximum(total)
        self.meter.setValue(min(used, total))  # a full bar at most; the text says how far over
        share = used / total
        full = used >= total
        warn = (share >= WARN_AT if warn is None else warn) or full
        self.meter.setFormat(f"Context full ({share:.0%})" if full else f"Context {share:.0%}")
        tip = f"{used:,} of {total:,} tokens of the model's context window are in use."
        if attached:  # "about": estimated until the model's tokenizer reads them at Send
            tip += (
                f"\nAbout {attached:,} of them are the documents attached to the next "
                "message (not sent yet)."
            )
        if reserve:
            tip += f"\nThe next reply may need up to {reserve:,} more."
        if full:
            tip += (
                "\nThe conversation no longer fits: before the next reply Hearth will ask "
                "whether the model may stop reading its oldest messages, or start a new chat."
            )
        elif warn:
            tip += (
                "\nThe conversation will soon no longer fit: Hearth will ask before "
                "the model stops reading its oldest messages."
            )
        self.meter.setToolTip(tip)
        self.meter.setAccessibleDescription(f"{share:.0%} of the context window in use")
        self.meter.setProperty("warn", warn)
        self.meter.style().unpolish(self.meter)
        self.meter.style().polish(self.meter)

    def set_context_known(self, known: bool) -> None:
        """Whether the model's context window is known (a server that does not say how
        long it is: the meter counts tokens, without a percentage)."""
        if known != self._known:
            self._known = known
            self.set_context(*self._shown[:2], warn=self._shown[2], reserve=self._shown[3])

    def _show_tokens(self, used: int) -> None:
        self.meter.setMaximum(1)
        self.meter.setValue(0)
        self.meter.setFormat(f"{used:,} tokens")
        self.meter.setToolTip(
            f"{used:,} tokens are in use. The server does not say how long its model's "
            "context window is, so no share is shown; when the conversation no longer "
            "fits, the server says so and Hearth tells you."
        )
        self.meter.setAccessibleDescription(f"{used:,} tokens in use")
        self.meter.setProperty("warn", False)
        self.meter.style().unpolish(self.meter)
        self.meter.style().polish(self.meter)
