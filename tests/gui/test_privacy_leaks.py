"""Nothing of an encrypted history leaks around it (issue 17): after a session that
chats, renames, deletes (with its undo notice), searches and exports, no word of the
chats is in any file under Hearth's folders (the database, its WAL, settings, the log,
the crash report file), the window title never held one, and the export left no
temporary file beside it.

The model is a ScriptedBackend (what the window does with the words is under test,
not llama.cpp); the keyring is FileKeyring (no Secret Service here). The rest is real.
"""

from __future__ import annotations

from pathlib import Path

from pytestqt.qtbot import QtBot

from app.chat_lock import ChatLock
from app.paths import resolve_paths
from tests.fakes.scripted import ScriptedBackend
from tests.gui.conftest import send
from tests.gui.test_privacy import file_keyring

_ = file_keyring  # the autouse fixture, used here too

WORDS = ("xylophonist", "quetzalcoatl", "snorkelling", "gazpacho")


def found_in(folder: Path) -> list[str]:
    hits = []
    for path in (p for p in folder.rglob("*") if p.is_file()):
        data = path.read_bytes().lower()
        hits += [f"{path.relative_to(folder)}: {w}" for w in WORDS if w.encode() in data]
    return hits


def test_no_chat_word_in_logs_crash_reports_or_the_title(
    qtbot: QtBot,
    launch,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    data = tmp_path / "hearth-data"
    paths = resolve_paths(data).ensure()
    ChatLock(paths.db_path).encrypt()
    hearth = launch(
        data,
        backend=ScriptedBackend(
            ["The xylophonist eats gazpacho.", "Quetzalcoatl went snorkelling."]
        ),
    )
    titles = [hearth.window.windowTitle()]
    hearth.window.windowTitleChanged.connect(titles.append)
    send(qtbot, hearth, "Who is the xylophonist?")
    qtbot.waitUntil(lambda: not hearth.replies.busy, timeout=10_000)
    first = hearth.conversations.current_id
    assert first is not None
    hearth.conversations.new_chat()
    send(qtbot, hearth, "Tell me about quetzalcoatl")
    qtbot.waitUntil(lambda: not hearth.replies.busy, timeout=10_000)
    assert hearth.store.search("snorkelling") and hearth.store.search("gazpacho")
    # Renaming and deleting say the chat's title in notices: never into the log.
    hearth.window.rename_requested.emit(first, "Gazpacho xylophonist notes")
    hearth.window.delete_requested.emit(first)
    qtbot.waitUntil(lambda: any("Deleted" in t for t in hearth.notifier.texts()))
    # An export goes where the person chose, whole, with nothing left beside it.
    out = tmp_path / "out"
    out.mkdir()
    hearth.window.export_requested.emit(None, "json", str(out / "chats.json"))
    qtbot.waitUntil(lambda: (out / "chats.json").exists(), timeout=10_000)
    qtbot.waitUntil(lambda: any("Exported to" in t for t in hearth.notifier.texts()))
    assert sorted(p.name for p in out.iterdir()) == ["chats.json"]
    assert found_in(out)  # the control: the export itself holds the chats (it says so)
    hearth.close()

    assert all(not any(w in t.lower() for w in WORDS) for t in titles), titles
    assert paths.log_dir.is_relative_to(data) and any(paths.log_dir.iterdir())
    log_text = "".join(p.read_text(errors="replace") for p in paths.log_dir.rglob("*.log*"))
    assert "said (info)" in log_text  # the notices are logged, without the chats' words
    assert found_in(data) == []
