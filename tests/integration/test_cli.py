"""``hearth`` on the command line, as a separate process, on the real starter model."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from app.version import __version__
from engine.history.store import ChatStore
from engine.history.types import MessageStatus


def hearth(*args: str, data_dir: Path, **kwargs: object) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HEARTH_DATA_DIR": str(data_dir)}
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
        **kwargs,  # type: ignore[arg-type]
    )


def test_version(tmp_path: Path) -> None:
    result = hearth("--version", data_dir=tmp_path)
    assert result.returncode == 0
    assert result.stdout.strip() == f"Hearth {__version__}"


def test_chat_streams_saves_and_reports_json_stats(data_dir: Path) -> None:
    result = hearth("chat", "--json", "--max-tokens", "24", "Say hello.", data_dir=data_dir)
    assert result.returncode == 0, result.stderr
    *reply_lines, stats_line = result.stdout.rstrip("\n").split("\n")
    stats = json.loads(stats_line)
    assert set(stats) >= {
        "prompt_tokens",
        "completion_tokens",
        "ttft_s",
        "tokens_per_s",
        "peak_rss_bytes",
    }
    assert 0 < stats["completion_tokens"] <= 24
    assert stats["prompt_tokens"] > 3 and stats["tokens_per_s"] > 0
    assert stats["peak_rss_bytes"] > 50_000_000  # the model is in memory
    reply = "\n".join(reply_lines)
    # Saved like any conversation, so the window can continue it.
    store = ChatStore(data_dir / "hearth.sqlite3")
    try:
        (conv,) = store.list_conversations()
        assert conv.id == stats["conversation_id"]
        user, assistant = store.messages(conv.id)
        assert user.content == "Say hello."
        assert assistant.content == reply
        assert assistant.status in (MessageStatus.COMPLETE, MessageStatus.LENGTH)
    finally:
        store.close()

    # ...and the CLI can continue it too: the history goes into the prompt.
    again = hearth(
        "chat",
        "--json",
        "--max-tokens",
        "8",
        "--conversation",
        str(conv.id),
        "And again.",
        data_dir=data_dir,
    )
    assert again.returncode == 0, again.stderr
    assert (
        json.loads(again.stdout.strip().split("\n")[-1])["prompt_tokens"] > stats["prompt_tokens"]
    )


def test_temperature_zero_gives_the_same_reply_twice(data_dir: Path) -> None:
    args = ("chat", "--temperature", "0", "--max-tokens", "24", "Name three colors.")
    first, second = hearth(*args, data_dir=data_dir), hearth(*args, data_dir=data_dir)
    assert first.returncode == second.returncode == 0, first.stderr + second.stderr
    assert first.stdout == second.stdout and first.stdout.strip()


def test_chat_with_a_bad_model_file_says_so(data_dir: Path) -> None:
    bad = data_dir / "notes.txt"
    bad.write_text("not a model")
    result = hearth("chat", "--model", str(bad), "hi", data_dir=data_dir)
    assert result.returncode == 1
    assert "notes.txt" in result.stderr and "Traceback" not in result.stderr


def test_kill_9_mid_reply_loses_at_most_about_a_second(data_dir: Path) -> None:
    """The reply is saved while it streams: after SIGKILL the database holds
    everything that was printed more than ~1 s before the kill."""
    env = {**os.environ, "HEARTH_DATA_DIR": str(data_dir), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        # Greedy counting runs for thousands of tokens: the reply cannot end
        # on its own before the kill. (The starter model's default repeat penalty
        # would end the count after ten digits.)
        [
            sys.executable,
            "-m",
            "app",
            "chat",
            "--temperature",
            "0",
            "--repeat-penalty",
            "1",
            "--max-tokens",
            "4000",
            "Count from 1 to 2000, separated by commas.",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    assert proc.stdout is not None
    printed = bytearray()
    timeline: list[tuple[float, int]] = []
    first = None
    try:
        while True:
            chunk = os.read(proc.stdout.fileno(), 4096)
            assert chunk, "the reply ended before the test could kill it"
            printed += chunk
            now = time.monotonic()
            timeline.append((now, len(printed)))
            first = first or now
            if now - first > 3.0:  # streaming for 3 s: several saves have happened
                break
        os.kill(proc.pid, signal.SIGKILL)
        killed_at = time.monotonic()
    finally:
        proc.kill()
        proc.wait(timeout=30)
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL

    store = ChatStore(data_dir / "hearth.sqlite3")  # reopening also runs crash recovery
    try:
        (conv,) = store.list_conversations()
        reply = store.messages(conv.id)[-1]
        assert reply.status == MessageStatus.INTERRUPTED
        text = printed.decode("utf-8", errors="ignore")
        saved = reply.content
        assert text.startswith(saved), "what was saved is exactly what was shown"
        # Everything printed 1.5 s before the kill (1 s save interval + slack) is saved.
        must_have = max((n for t, n in timeline if t <= killed_at - 1.5), default=0)
        assert must_have > 0
        assert len(saved.encode()) >= must_have
    finally:
        store.close()
    with sqlite3.connect(data_dir / "hearth.sqlite3") as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()


def test_chat_uses_the_model_and_folder_chosen_in_the_app(data_dir: Path, tmp_path: Path) -> None:
    """What Settings saved (a moved models folder, a file of one's own) is what
    `hearth chat` runs."""
    moved = tmp_path / "other-disk-models"
    (data_dir / "models").rename(moved)
    config = data_dir / "config"
    config.mkdir()

    def chat_with(settings: dict[str, str]) -> str:
        (config / "settings.json").write_text(json.dumps({"version": 1, "values": settings}))
        result = hearth("chat", "--json", "--max-tokens", "4", "Hi", data_dir=data_dir)
        assert result.returncode == 0, result.stderr
        return str(json.loads(result.stdout.rstrip("\n").split("\n")[-1])["model"])

    starter = moved / "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert chat_with({"storage.models_dir": str(moved)}) == str(starter)
    assert not list((data_dir / "models").glob("*.gguf"))  # not installed again elsewhere
    own = tmp_path / "mine.gguf"
    own.write_bytes(starter.read_bytes())
    assert chat_with({"storage.models_dir": str(moved), "model.path": str(own)}) == str(own)


def _conversation_titles(data_dir: Path) -> list[str]:
    store = ChatStore(data_dir / "hearth.sqlite3")
    try:
        return [c.title for c in store.list_conversations()]
    finally:
        store.close()


def test_chat_refuses_bad_numbers_and_an_empty_message_and_saves_nothing(
    data_dir: Path,
) -> None:
    store = ChatStore(data_dir / "hearth.sqlite3")
    store.create_conversation("already here")
    store.close()
    number, whole = "must be a number", "must be a whole number"
    refused = [
        ("--temperature", "-1", f"{number} from 0 to 2, not '-1'."),
        ("--temperature", "nan", f"{number} from 0 to 2, not 'nan'."),
        ("--max-tokens", "0", f"{whole} from 1 to 131072, not '0'."),
        ("--max-tokens", "-5", f"{whole} from 1 to 131072, not '-5'."),
        ("--max-tokens", "2.5", f"{whole} from 1 to 131072, not '2.5'."),
        ("--max-thinking-tokens", "-1", f"{whole} from 0 to 131072, not '-1'."),
        ("--repeat-penalty", "0", f"{number} greater than 0, not '0'."),
        ("--repeat-penalty", "-1.1", f"{number} greater than 0, not '-1.1'."),
    ]
    for flag, value, sentence in refused:
        result = hearth("chat", flag, value, "Hi", data_dir=data_dir)
        assert result.returncode == 2, (flag, value, result.stderr)
        assert f"error: argument {flag}: {sentence}" in result.stderr, result.stderr
        assert "Traceback" not in result.stderr and result.stdout == ""
    for empty in ("", "  \n"):
        result = hearth("chat", empty, data_dir=data_dir)
        assert result.returncode == 2, result.stderr
        assert "argument prompt: the message is empty; write something to send." in result.stderr
    assert _conversation_titles(data_dir) == ["already here"]


def test_chat_checks_the_sampling_values_before_saving_anything(data_dir: Path) -> None:
    """Values that reach the chat itself (not through the parser) are checked
    before the conversation is created, not after it has an empty reply."""
    from app.cli import run_chat, with_saved_models_dir
    from app.main import build_parser
    from app.paths import resolve_paths

    paths = with_saved_models_dir(resolve_paths(str(data_dir)))
    bad = [("max_tokens", 0), ("temperature", -1.0), ("max_thinking_tokens", -1)]
    bad += [("repeat_penalty", 0.0), ("prompt", " ")]
    for name, value in bad:
        args = build_parser().parse_args(["chat", "Hi"])
        setattr(args, name, value)
        assert run_chat(args, paths) == 2, name
    assert _conversation_titles(data_dir) == []
