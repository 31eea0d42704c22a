"""Encryption of the chats (issue 17): the section on Settings → Privacy & storage, the
dialog that shows the recovery key once, and the unlock dialog.

Widgets only: they show a state and emit what the person asked for; app/privacy.py
does the work (no keyring, no database here: a contract says so).
"""

from __future__ import annotations

from enum import StrEnum

from PySide6.QtCore import Qt, QTimer, Signal, Slot
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QRadioButton,
    QVBoxLayout,
    QWidget,
)

MIN_PASSPHRASE = 8
FORGET_WARNING = (
    "If you forget the passphrase and lose the recovery key, nobody (not even Hearth) "
    "can open your chats again."
)


class Held(StrEnum):
    """How the chats are protected, as the section shows it."""

    NONE = "none"
    KEYRING = "keyring"
    PASSPHRASE = "passphrase"


_STATUS = {
    Held.NONE: "Your chats are stored unencrypted: anyone with a copy of the chats folder "
    "(a lost laptop, a synced folder, a backup) can read them.",
    Held.KEYRING: "Your chats are encrypted. The key is kept in your system keyring and "
    "unlocks them when you log in. Lock now and locking after idle time need a passphrase: "
    "with the keyring, anyone at this logged-in computer unlocks without a secret, so lock "
    "the computer's screen instead.",
    Held.PASSPHRASE: "Your chats are encrypted and locked by a passphrase that Hearth asks "
    "for at every start.",
}


class EncryptionSection(QGroupBox):
    """Turn encryption on or off, choose who holds the key, lock now."""

    encrypt_requested = Signal(str, str)  # Held, passphrase ("" for the keyring)
    decrypt_requested = Signal()
    holder_change_requested = Signal(str, str)  # Held, passphrase: same key, held anew
    lock_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Encryption", parent)
        self.setObjectName("encryption_section")
        self.held = Held.NONE
        self.status = QLabel("")
        self.status.setObjectName("encryption_status")
        self.status.setWordWrap(True)
        self.keyring_choice = QRadioButton("Keep the key in the system keyring")
        self.keyring_choice.setObjectName("keyring_choice")
        self.keyring_choice.setToolTip("Unlocks by itself when you log in.")
        self.passphrase_choice = QRadioButton("Ask for a passphrase when Hearth starts")
        self.passphrase_choice.setObjectName("passphrase_choice")
        group = QButtonGroup(self)
        group.addButton(self.keyring_choice)
        group.addButton(self.passphrase_choice)
        self.keyring_choice.setChecked(True)
        self.passphrase = QLineEdit()
        self.passphrase.setObjectName("new_passphrase")
        self.passphrase.setAccessibleName("New passphrase")
        self.passphrase.setEchoMode(QLineEdit.EchoMode.Password)
        self.passphrase.setPlaceholderText(f"at least {MIN_PASSPHRASE} characters")
        self.repeat = QLineEdit()
        self.repeat.setObjectName("repeat_passphrase")
        self.repeat.setAccessibleName("The passphrase again")
        self.repeat.setEchoMode(QLineEdit.EchoMode.Password)
        self.form = QWidget()
        fields = QFormLayout(self.form)
        fields.setContentsMargins(24, 0, 0, 0)
        fields.addRow("Passphrase", self.passphrase)
        fields.addRow("Again", self.repeat)
        self.warning = QLabel(FORGET_WARNING)
        self.warning.setObjectName("forget_warning")
        self.warning.setWordWrap(True)
        self.problem = QLabel("")
        self.problem.setObjectName("passphrase_problem")
        self.problem.setWordWrap(True)
        self.apply_button = QPushButton("Encrypt my chats")
        self.apply_button.setObjectName("encrypt_button")
        self.decrypt_button = QPushButton("Stop encrypting…")
        self.decrypt_button.setObjectName("decrypt_button")
        self.lock_button = QPushButton("Lock now")
        self.lock_button.setObjectName("lock_now_button")
        buttons = QHBoxLayout()
        buttons.addWidget(self.apply_button)
        buttons.addWidget(self.decrypt_button)
        buttons.addWidget(self.lock_button)
        buttons.addStretch(1)
        layout = QVBoxLayout(self)
        layout.addWidget(self.status)
        layout.addWidget(self.keyring_choice)
        layout.addWidget(self.passphrase_choice)
        layout.addWidget(self.form)
        layout.addWidget(self.warning)
        layout.addWidget(self.problem)
        layout.addLayout(buttons)
        for button in (self.apply_button, self.decrypt_button, self.lock_button):
            button.setAutoDefault(False)
        self.keyring_choice.toggled.connect(self._update)
        self.passphrase.textChanged.connect(self._update)
        self.repeat.textChanged.connect(self._update)
        self.apply_button.clicked.connect(self._on_apply)
        self.decrypt_button.clicked.connect(self.decrypt_requested)
        self.lock_button.clicked.connect(self.lock_requested)
        self.set_state(Held.NONE)

    def set_state(self, held: Held, *, keyring_usable: bool = True, busy: bool = False) -> None:
        self.held = held
        self.status.setText(_STATUS[held])
        self.keyring_choice.setEnabled(keyring_usable and not busy)
        self.passphrase_choice.setEnabled(not busy)
        if not keyring_usable:
            self.keyring_choice.setToolTip(
                "This computer has no system keyring Hearth can use: choose a passphrase."
            )
            self.passphrase_choice.setChecked(True)
        elif held is not Held.NONE:
            (self.passphrase_choice if held is Held.PASSPHRASE else self.keyring_choice).setChecked(
                True
            )
        self.passphrase.clear()
        self.repeat.clear()
        self.decrypt_button.setVisible(held is not Held.NONE)
        self.decrypt_button.setEnabled(not busy)
        self.lock_button.setVisible(held is Held.PASSPHRASE)
        self._busy = busy
        self._update()

    @property
    def chosen(self) -> Held:
        return Held.PASSPHRASE if self.passphrase_choice.isChecked() else Held.KEYRING

    @Slot()
    def _update(self) -> None:
        wants_passphrase = self.chosen is Held.PASSPHRASE
        self.form.setVisible(wants_passphrase)
        self.warning.setVisible(wants_passphrase)
        first, again = self.passphrase.text(), self.repeat.text()
        problem = ""
        if wants_passphrase and first and len(first) < MIN_PASSPHRASE:
            problem = f"A passphrase has at least {MIN_PASSPHRASE} characters."
        elif wants_passphrase and again and again != first:
            problem = "The two passphrases differ."
        self.problem.setText(problem)
        ready = not problem and (not wants_passphrase or (first and again == first))
        if self.held is Held.NONE:
            self.apply_button.setText("Encrypt my chats")
        elif self.chosen is Held.PASSPHRASE:
            self.apply_button.setText(
                "Change passphrase" if self.held is Held.PASSPHRASE else "Use this passphrase"
            )
        else:
            self.apply_button.setText("Keep the key in the keyring")
            ready = ready and self.held is not Held.KEYRING
        self.apply_button.setEnabled(bool(ready) and not getattr(self, "_busy", False))
        # Nothing to apply when the choice is how the key is held already (the keyring).
        self.apply_button.setVisible(not (self.held is Held.KEYRING is self.chosen))

    @Slot()
    def _on_apply(self) -> None:
        text = self.passphrase.text() if self.chosen is Held.PASSPHRASE else ""
        if self.held is Held.NONE:
            self.encrypt_requested.emit(self.chosen.value, text)
        else:
            self.holder_change_requested.emit(self.chosen.value, text)


class RecoveryKeyDialog(QDialog):
    """The recovery key, shown once; closing asks that it was written down."""

    def __init__(self, code: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("recovery_key_dialog")
        self.setWindowTitle("Your recovery key")
        intro = QLabel(
            "Your chats are encrypted. Write this recovery key down and keep it apart from "
            "this computer. It opens your chats if the passphrase is forgotten or the "
            "keyring entry is lost. Hearth shows it only this once."
        )
        intro.setWordWrap(True)
        self.code = QLabel(code)
        self.code.setObjectName("recovery_code")
        self.code.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        font = self.code.font()
        font.setFamily("monospace")
        font.setPointSizeF(font.pointSizeF() * 1.15)
        self.code.setFont(font)
        self.code.setAlignment(Qt.AlignmentFlag.AlignCenter)
        copy = QPushButton("Copy")
        copy.setObjectName("copy_recovery_code")
        copy.clicked.connect(lambda: QGuiApplication.clipboard().setText(code))
        self.kept = QCheckBox("I have written down the recovery key")
        self.kept.setObjectName("recovery_kept")
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok)
        self.ok = buttons.button(QDialogButtonBox.StandardButton.Ok)
        self.ok.setText("Done")
        self.ok.setEnabled(False)
        self.kept.toggled.connect(self.ok.setEnabled)
        buttons.accepted.connect(self.accept)
        row = QHBoxLayout()
        row.addWidget(self.code, 1)
        row.addWidget(copy)
        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addLayout(row)
        layout.addWidget(self.kept)
        layout.addWidget(buttons)
        self.resize(560, self.sizeHint().height())

    def reject(self) -> None:  # Escape: the key must have been seen
        if self.kept.isChecked():
            super().reject()


class UnlockDialog(QDialog):
    """Asks for the passphrase (or the recovery key). A wrong one disables Unlock for a
    time that doubles with each try (1 s, 2 s, 4 s … at most a minute)."""

    unlock_requested = Signal(str, bool)  # the text, whether it is a recovery key

    MAX_DELAY_MS = 60_000
    FRESH = 2  # the result when the person sets the file aside and starts anew

    def __init__(
        self,
        *,
        recovery_only: bool = False,
        offer_fresh: bool = False,
        reason: str = "",
        delay_base_ms: int = 1000,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("unlock_dialog")
        self.setWindowTitle("Unlock your chats")
        self._base = delay_base_ms
        self.failures = 0
        self.delay_ms = 0
        self.reason = QLabel(reason or "Your chats are locked. Enter your passphrase.")
        self.reason.setObjectName("unlock_reason")
        self.reason.setWordWrap(True)
        self.entry = QLineEdit()
        self.entry.setObjectName("unlock_entry")
        self.entry.setAccessibleName("Passphrase")
        self.entry.setEchoMode(QLineEdit.EchoMode.Password)
        self.use_recovery = QCheckBox("Use the recovery key instead")
        self.use_recovery.setObjectName("use_recovery_key")
        self.use_recovery.toggled.connect(self._on_mode)
        self.problem = QLabel("")
        self.problem.setObjectName("unlock_problem")
        self.problem.setWordWrap(True)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        self.unlock_button = buttons.addButton("Unlock", QDialogButtonBox.ButtonRole.AcceptRole)
        self.unlock_button.setObjectName("unlock_button")
        cancel = buttons.button(QDialogButtonBox.StandardButton.Cancel)
        cancel.setText("Quit Hearth")
        cancel.setObjectName("unlock_quit")
        buttons.accepted.connect(self._on_unlock)
        buttons.rejected.connect(self.reject)
        if offer_fresh:  # the file may be damaged, not encrypted: it is kept either way
            fresh = buttons.addButton(
                "Set it aside, start empty", QDialogButtonBox.ButtonRole.DestructiveRole
            )
            fresh.setObjectName("unlock_fresh")
            fresh.clicked.connect(lambda: self.done(self.FRESH))
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self._on_wait_over)
        layout = QVBoxLayout(self)
        layout.addWidget(self.reason)
        layout.addWidget(self.entry)
        layout.addWidget(self.use_recovery)
        layout.addWidget(self.problem)
        layout.addWidget(buttons)
        if recovery_only:
            self.use_recovery.setChecked(True)
            self.use_recovery.setEnabled(False)
        self.setMinimumWidth(460)
        self.resize(460, self.sizeHint().height())

    @Slot(bool)
    def _on_mode(self, recovery: bool) -> None:
        self.entry.setEchoMode(
            QLineEdit.EchoMode.Normal if recovery else QLineEdit.EchoMode.Password
        )
        self.entry.setPlaceholderText("ABCD-EFGH-…" if recovery else "")
        self.entry.setAccessibleName("Recovery key" if recovery else "Passphrase")

    @Slot()
    def _on_unlock(self) -> None:
        if self._timer.isActive() or not self.entry.text():
            return
        self.unlock_requested.emit(self.entry.text(), self.use_recovery.isChecked())

    def refuse(self, sentence: str) -> None:
        """The text did not unlock: say why and make the next try wait longer."""
        self.failures += 1
        self.delay_ms = min(self._base * 2 ** (self.failures - 1), self.MAX_DELAY_MS)
        self.entry.selectAll()
        self.unlock_button.setEnabled(False)
        self.problem.setText(f"{sentence} You can try again in {self.delay_ms / 1000:g} s.")
        self.adjustSize()  # room for the sentence (the width stays: setMinimumWidth)
        self._timer.start(self.delay_ms)

    @Slot()
    def _on_wait_over(self) -> None:
        self.unlock_button.setEnabled(True)
        self.entry.setFocus()
