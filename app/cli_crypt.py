"""`hearth encrypt`, `hearth decrypt`, `hearth rekey`, and unlocking the chats for every
command that reads them (issue 17). No Qt.

The key comes from the keyring by itself; a passphrase from ``--passphrase-file`` or,
in a terminal, from a prompt that does not echo; ``--recovery-key-file`` when the
passphrase is forgotten or the keyring entry is gone.
"""

from __future__ import annotations

import argparse
import getpass
import sys
import time
from pathlib import Path

from app.chat_lock import ChatLock, Protection
from app.paths import AppPaths
from engine.crypto import keys
from engine.errors import KnownError
from engine.history.store import ChatStore

_TRIES = 3


def _unlock_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--passphrase-file",
        metavar="FILE",
        help="read the passphrase that unlocks encrypted chats from FILE (its first line)",
    )
    p.add_argument(
        "--recovery-key-file",
        metavar="FILE",
        help="unlock encrypted chats with the recovery key in FILE",
    )


def add_crypt_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The three commands, and the unlock options of every command that reads chats."""
    enc = sub.add_parser(
        "encrypt",
        help="encrypt the chat history (key in the system keyring, or a passphrase)",
        description="Encrypt the chat history. Without options the key is kept in the "
        "system keyring and unlocks by itself; with --passphrase Hearth asks for it at "
        "every start. A recovery key is printed once: keep it somewhere safe.",
    )
    rekey = sub.add_parser(
        "rekey",
        help="encrypt the chat history again with a new key (and a new recovery key)",
    )
    for p in (enc, rekey):
        how = p.add_mutually_exclusive_group()
        how.add_argument(
            "--passphrase", action="store_true", help="hold the new key with a passphrase"
        )
        how.add_argument(
            "--new-passphrase-file", metavar="FILE", help="the new passphrase, from FILE"
        )
    _unlock_options(rekey)
    dec = sub.add_parser("decrypt", help="write the chat history back unencrypted")
    _unlock_options(dec)
    if "chat" in sub.choices:
        _unlock_options(sub.choices["chat"])


def _first_line(path: str) -> str:
    try:
        return Path(path).expanduser().read_text(encoding="utf-8").splitlines()[0]
    except (OSError, UnicodeDecodeError, IndexError) as e:
        raise keys.ChatKeyError(
            f"Could not read a passphrase from {path}: {getattr(e, 'strerror', None) or e}."
        ) from e


def _ask(prompt: str) -> str:
    if not sys.stdin.isatty():
        raise keys.ChatKeyError(
            "Your chats are locked by a passphrase: run this in a terminal to type it, "
            "or give --passphrase-file FILE."
        )
    return getpass.getpass(prompt)


def unlock(lock: ChatLock, args: argparse.Namespace) -> bytes | None:
    """The key of the history (None: it is not encrypted), or a ``KnownError``."""
    notice = lock.recover()
    if notice:
        print(notice, file=sys.stderr)
    recovery = getattr(args, "recovery_key_file", None)
    if recovery:
        return lock.key_from_recovery(_first_line(recovery))
    protection = lock.protection()
    if protection is Protection.NONE:
        return None
    if protection is Protection.UNKNOWN:
        raise keys.ChatKeyError(
            f"The chat history at {lock.db} is encrypted but its key file is missing. "
            "Unlock it with --recovery-key-file FILE."
        )
    if protection is Protection.KEYRING:
        return lock.key_from_keyring()
    given = getattr(args, "passphrase_file", None)
    if given:
        return lock.key_from_passphrase(_first_line(given))
    for attempt in range(_TRIES):
        try:
            return lock.key_from_passphrase(_ask("Passphrase for your chats: "))
        except keys.WrongPassphraseError as e:
            if attempt == _TRIES - 1:
                raise
            print(f"hearth: {e.message}", file=sys.stderr)
            time.sleep(2**attempt)  # a guesser's every try costs more
    raise AssertionError("unreachable")


def open_chats(paths: AppPaths, args: argparse.Namespace) -> tuple[ChatStore, str | None]:
    """The store for a command: unlocked the way it is held. Raises ``KnownError``."""
    lock = ChatLock(paths.db_path)
    return lock.open(unlock(lock, args))


def _new_passphrase(args: argparse.Namespace) -> str | None:
    if args.new_passphrase_file:
        return _first_line(args.new_passphrase_file)
    if not args.passphrase:
        return None
    first = _ask("New passphrase for your chats: ")
    keys.check_passphrase(first)
    if _ask("The same passphrase again: ") != first:
        raise keys.ChatKeyError("The two passphrases differ; nothing was changed.")
    return first


def _progress(fraction: float) -> None:
    if sys.stderr.isatty():
        print(f"\r{fraction:4.0%}", end="", file=sys.stderr, flush=True)


def _show_recovery(code: str) -> None:
    print(
        "Your recovery key (shown this once; write it down and keep it apart from this "
        "computer; it opens your chats if the passphrase is forgotten or the keyring "
        f"entry is lost):\n\n    {code}\n"
    )


def run_crypt(args: argparse.Namespace, paths: AppPaths) -> int:
    paths.ensure()
    lock = ChatLock(paths.db_path)
    try:
        if args.command == "encrypt":
            notice = lock.recover()
            if notice:
                print(notice, file=sys.stderr)
            done = lock.encrypt(passphrase=_new_passphrase(args), progress=_progress)
            print(f"Your chats are encrypted ({done.seconds:.1f} s).", file=sys.stderr)
            _show_recovery(done.recovery_code)
            return 0
        key = unlock(lock, args)
        if key is None:
            print("hearth: your chats are not encrypted; nothing to do.", file=sys.stderr)
            return 0 if args.command == "decrypt" else 1
        if args.command == "decrypt":
            seconds = lock.decrypt(key, progress=_progress)
            print(
                f"Your chats are no longer encrypted ({seconds:.1f} s). The old file was "
                "deleted; on an SSD or in a backup its blocks may remain.",
                file=sys.stderr,
            )
            return 0
        done = lock.rekey(key, passphrase=_new_passphrase(args), progress=_progress)
        print(f"Your chats have a new key ({done.seconds:.1f} s).", file=sys.stderr)
        _show_recovery(done.recovery_code)
        return 0
    except KnownError as exc:
        print(f"hearth: {exc.message}", file=sys.stderr)
        return 1
