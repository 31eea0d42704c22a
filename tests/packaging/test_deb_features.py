"""The installed .deb's features that rest on libraries imported late or found at run time.

PyInstaller bundles what it sees imported; Hearth imports pypdf and python-docx when a
document is attached, the MCP SDK when a tool server starts, and apsw-sqlite3mc (with
a fallback sentence when it is missing) only for an encrypted history. A module, a data
file or a package's metadata left out of the bundle would pass test_deb.py's chat and
fail the first person who attaches a PDF. So each feature runs here, for real, through
the installed command (the frozen app under /opt/hearth of a temp root, with its own
HOME and nothing of the dev venv: see conftest.clean_env) and the starter model.

Nothing is faked. The MCP server is the real ``mcp-server-time`` from PyPI, run from
the dev venv (it is a separate program the person installs, not part of Hearth).
"""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.documents import docx_file, pdf_bytes
from tests.packaging.conftest import Installed, clean_env
from tests.packaging.test_deb import chat, user_dirs

pytestmark = pytest.mark.timeout(3600)  # the session's .deb build, if this runs first

TIME_SERVER = shutil.which("mcp-server-time") or str(
    Path(sys.executable).with_name("mcp-server-time")
)


def hearth(installed: Installed, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The installed command, run as a person's terminal would (no tty: stdin is empty)."""
    return subprocess.run(
        [str(installed.hearth), *args],
        env=clean_env(home),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_installed_app_reads_attached_pdf_and_word_documents(
    installed: Installed, tmp_path: Path
) -> None:
    """pypdf and python-docx (with lxml) work in the frozen app: both documents' text is
    extracted, chunked and stored with the chat."""
    pdf = tmp_path / "lighthouse.pdf"
    pdf.write_bytes(pdf_bytes([["The lighthouse keeper's cat is named Marmalade."]]))
    word = docx_file(tmp_path / "garden.docx")
    home = tmp_path / "home"
    stats = chat(installed.hearth, home, "--file", str(pdf), "--file", str(word), "Cat's name?")

    data, _ = user_dirs(home)
    with contextlib.closing(
        sqlite3.connect(f"file:{data / 'hearth.sqlite3'}?mode=ro", uri=True)
    ) as db:
        kinds = sorted(row[0] for row in db.execute("SELECT kind FROM documents"))
        text = "\n".join(row[0] for row in db.execute("SELECT text FROM doc_chunks"))
    assert kinds == ["docx", "pdf"]
    assert "Marmalade" in text  # the PDF's text layer
    assert "Tomatoes need six hours of sun" in text and "Basil" in text  # paragraphs, table
    # The documents went into the prompt, not just into the store.
    assert int(stats["prompt_tokens"]) > 60  # type: ignore[call-overload]


def test_installed_app_starts_an_mcp_server_and_lists_its_tools(
    installed: Installed, tmp_path: Path
) -> None:
    """The MCP SDK (and what it reads at import: its dependencies' package metadata,
    pydantic, anyio) works in the frozen app: it starts a real server over stdio,
    initializes a session and lists the server's tools."""
    assert Path(TIME_SERVER).is_file(), "mcp-server-time is installed with the [test] extra"
    added = hearth(installed, tmp_path, "mcp", "add", "time", "--", TIME_SERVER)
    assert added.returncode == 0, added.stderr
    listed = hearth(installed, tmp_path, "mcp", "list")
    assert listed.returncode == 0, listed.stdout + listed.stderr
    assert "get_current_time" in listed.stdout and "convert_time" in listed.stdout
    assert "Traceback" not in listed.stderr


def test_installed_app_encrypts_the_chats_and_unlocks_them_with_a_passphrase(
    installed: Installed, tmp_path: Path
) -> None:
    """apsw-sqlite3mc and cryptography's Argon2id/AES-GCM work in the frozen app. Its
    encryption library is optional in the code (a sentence when missing), so the file
    on disk is checked too: a build without it must not pass."""
    home = tmp_path / "home"
    first = chat(installed.hearth, home, "Hi")
    passphrase = tmp_path / "passphrase"
    passphrase.write_text("correct horse battery staple\n", encoding="utf-8")

    encrypted = hearth(installed, home, "encrypt", "--new-passphrase-file", str(passphrase))
    assert encrypted.returncode == 0, encrypted.stderr
    assert "Your chats are encrypted" in encrypted.stderr
    assert "recovery key" in encrypted.stdout
    data, _ = user_dirs(home)
    header = (data / "hearth.sqlite3").read_bytes()[:16]
    assert header != b"SQLite format 3\x00"  # not readable without the key

    locked = hearth(installed, home, "chat", "--max-tokens", "8", "And?")
    assert locked.returncode != 0
    assert "--passphrase-file" in locked.stderr  # says how to unlock, without a terminal

    again = chat(
        installed.hearth,
        home,
        "--passphrase-file",
        str(passphrase),
        "--conversation",
        str(first["conversation_id"]),
        "And?",
    )
    assert again["conversation_id"] == first["conversation_id"]
    assert int(again["prompt_tokens"]) > int(first["prompt_tokens"])  # type: ignore[call-overload]
