"""``hearth`` on the command line, as a separate process, on the real starter model."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from app.version import __version__
from engine.history.store import ChatStore
from engine.history.types import MessageStatus


def hearth(*args: str, data_dir: Path, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HEARTH_DATA_DIR": str(data_dir)}
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
        **kwargs,
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
        # Which model wrote it: the starter model's file.
        assert Path(assistant.model).name == "SmolLM2-135M-Instruct.Q4_1.gguf"
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


def _saved_reply(db_path: Path) -> str:
    """The newest reply as the database holds it right now (read-only, beside the writer)."""
    if not db_path.exists():
        return ""
    with closing(sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)) as db:
        try:
            row = db.execute(
                "SELECT content FROM messages WHERE role = 'assistant' ORDER BY id DESC LIMIT 1"
            ).fetchone()
        except sqlite3.OperationalError:  # the schema is not created yet
            return ""
    return str(row[0]) if row else ""


def test_kill_9_mid_reply_keeps_what_was_saved_while_it_streamed(data_dir: Path) -> None:
    """The reply is saved while it streams (the recorder's unit tests time the
    interval with a fake clock): after SIGKILL the database holds at least what it
    held before the kill, exactly as it was printed, and marks it interrupted. No
    wall-clock limit here: this machine's load would make one flaky."""
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
    db_path = data_dir / "hearth.sqlite3"
    printed = bytearray()
    saves: list[str] = []  # each different saved state seen while it streamed
    try:
        while len(saves) < 2:  # saved twice mid-reply: it saves as it goes, not at the end
            chunk = os.read(proc.stdout.fileno(), 4096)
            assert chunk, "the reply ended before the test could kill it"
            printed += chunk
            seen = _saved_reply(db_path)
            if seen and (not saves or seen != saves[-1]):
                saves.append(seen)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=30)
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL

    store = ChatStore(db_path)  # reopening also runs crash recovery
    try:
        (conv,) = store.list_conversations()
        reply = store.messages(conv.id)[-1]
        assert reply.status == MessageStatus.INTERRUPTED
        text = printed.decode("utf-8", errors="ignore")
        saved = reply.content
        assert text.startswith(saved), "what was saved is exactly what was shown"
        assert saved.startswith(saves[-1]) and len(saves[-1]) > len(saves[0])
    finally:
        store.close()
    with closing(sqlite3.connect(db_path)) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


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
    bad: list[tuple[str, object]] = [("max_tokens", 0), ("temperature", -1.0)]
    bad += [("max_thinking_tokens", -1)]
    bad += [("repeat_penalty", 0.0), ("prompt", " ")]
    for name, value in bad:
        args = build_parser().parse_args(["chat", "Hi"])
        setattr(args, name, value)
        assert run_chat(args, paths) == 2, name
    assert _conversation_titles(data_dir) == []


@pytest.fixture(scope="module")
def qwen35_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny random-weight qwen35 (a model that thinks; tests/fixtures/qwen35.py)."""
    from tests.fixtures.qwen35 import build_qwen35_gguf

    return build_qwen35_gguf(tmp_path_factory.mktemp("qwen35") / "qwen35-tiny-F16.gguf")


def _stats(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert result.returncode == 0, result.stderr
    stats: dict[str, Any] = json.loads(result.stdout.rstrip("\n").split("\n")[-1])
    return stats


def _write_settings(data_dir: Path, values: dict[str, object]) -> None:
    config = data_dir / "config"
    config.mkdir(exist_ok=True)
    (config / "settings.json").write_text(json.dumps({"version": 1, "values": values}))


def test_max_tokens_bounds_the_whole_reply_of_a_thinking_model(
    data_dir: Path, qwen35_path: Path
) -> None:
    """`--max-tokens N` is what the person waits for: thinking included (it had its own
    4,096-token budget on top: `--max-tokens 3` ran to 4,099 tokens)."""
    think = ("chat", "--model", str(qwen35_path), "--think", "--json", "--seed", "7")
    for n in (1, 3, 40):
        stats = _stats(hearth(*think, "--max-tokens", str(n), "Hi", data_dir=data_dir))
        assert stats["completion_tokens"] <= n, stats
        assert stats["thinking_tokens"] <= n // 2, stats  # the answer keeps the rest
        if n > 1:
            assert stats["thinking_tokens"] >= 1, stats  # it did think
    # An explicit thinking budget, within the whole.
    stats = _stats(
        hearth(*think, "--max-tokens", "12", "--max-thinking-tokens", "9", "Hi", data_dir=data_dir)
    )
    assert stats["completion_tokens"] <= 12 and 1 <= stats["thinking_tokens"] <= 9, stats
    store = ChatStore(data_dir / "hearth.sqlite3")
    try:
        reply = store.messages(stats["conversation_id"])[-1]
        assert reply.thinking and reply.status in (MessageStatus.LENGTH, MessageStatus.COMPLETE)
    finally:
        store.close()


def test_max_tokens_budgets_are_split_before_the_reply() -> None:
    from app.cli import reply_budgets
    from engine.types import SamplingParams

    base = SamplingParams(max_tokens=4096, max_thinking_tokens=4096)
    assert reply_budgets(3, None, base, thinks=True) == (2, 1)
    assert reply_budgets(1, None, base, thinks=True) == (1, 0)
    assert reply_budgets(20_000, None, base, thinks=True) == (20_000 - 4096, 4096)
    assert reply_budgets(100, 90, base, thinks=True) == (10, 90)
    assert reply_budgets(100, 500, base, thinks=True) == (1, 99)
    assert reply_budgets(24, None, base, thinks=False) == (24, 0)  # all of it to answer
    assert reply_budgets(None, None, base, thinks=True) == (4096, 4096)  # as the window
    assert reply_budgets(None, 5, base, thinks=True) == (4096, 5)


def test_thinking_follows_the_settings_mode_and_the_flags_override_it(
    data_dir: Path, qwen35_path: Path
) -> None:
    args = ("chat", "--model", str(qwen35_path), "--json", "--seed", "7", "--max-tokens", "8")
    _write_settings(data_dir, {"generation.thinking": "off"})
    assert _stats(hearth(*args, "Hi", data_dir=data_dir))["thinking_tokens"] == 0
    assert _stats(hearth(*args, "--thinking", "Hi", data_dir=data_dir))["thinking_tokens"] > 0
    _write_settings(data_dir, {"generation.thinking": "on"})
    assert _stats(hearth(*args, "Hi", data_dir=data_dir))["thinking_tokens"] > 0
    assert _stats(hearth(*args, "--no-think", "Hi", data_dir=data_dir))["thinking_tokens"] == 0


def test_the_settings_engine_options_and_automatic_context_are_the_windows(
    data_dir: Path, qwen35_path: Path
) -> None:
    from engine.models.memory import AUTO_CONTEXT

    args = ("chat", "--model", str(qwen35_path), "--no-think", "--json", "--max-tokens", "2")
    # "Automatic" is 16,384 (fitted to memory; this tiny model always fits), as in the window.
    assert _stats(hearth(*args, "Hi", data_dir=data_dir))["n_ctx"] == AUTO_CONTEXT
    _write_settings(data_dir, {"performance.n_ctx": 1024, "performance.threads": 1})
    assert _stats(hearth(*args, "Hi", data_dir=data_dir))["n_ctx"] == 1024
    stats = _stats(hearth(*args, "--context", "768", "--threads", "2", "Hi", data_dir=data_dir))
    assert stats["n_ctx"] == 768


def test_engine_options_are_the_settings_with_the_flags_on_top(tmp_path: Path) -> None:
    from app.cli import _engine_options
    from app.main import build_parser
    from engine.settings import Settings, engine_options

    (tmp_path / "settings.json").write_text(
        json.dumps(
            {
                "version": 1,
                "values": {
                    "performance.threads": 3,
                    "performance.kv_cache_type": "q8_0",
                    "performance.gpu_layers": 5,
                    "performance.use_mmap": True,
                },
            }
        )
    )
    settings = Settings(tmp_path / "settings.json")
    parse = build_parser().parse_args
    options, automatic = _engine_options(parse(["chat", "Hi"]), settings)
    assert (options, automatic) == (engine_options(settings), True)
    assert (options.n_threads, options.kv_cache_type, options.flash_attn) == (3, "q8_0", True)
    assert (options.n_gpu_layers, options.use_mmap) == (5, True)
    flags = parse(["chat", "--context", "2048", "--threads", "7", "Hi"])
    options, automatic = _engine_options(flags, settings)
    assert (options.n_ctx, options.n_threads, automatic) == (2048, 7, False)
    assert options.kv_cache_type == "q8_0"


def test_a_new_chats_system_prompt_is_its_setting_and_system_replaces_it(
    data_dir: Path,
) -> None:
    from engine.history.turns import chat_settings

    _write_settings(data_dir, {"generation.system_prompt": "Be brief."})
    stats = _stats(hearth("chat", "--json", "--max-tokens", "2", "Hi", data_dir=data_dir))
    conv = stats["conversation_id"]
    shown = hearth("chat", "--conversation", str(conv), "--show-prompt", "Next", data_dir=data_dir)
    assert shown.returncode == 0 and shown.stdout.count("Be brief.") == 1, shown.stderr
    replaced = hearth(
        "chat",
        "--json",
        "--max-tokens",
        "2",
        "--conversation",
        str(conv),
        "--system",
        "Talk like a pirate.",
        "Next",
        data_dir=data_dir,
    )
    assert _stats(replaced)["conversation_id"] == conv
    store = ChatStore(data_dir / "hearth.sqlite3")
    try:
        assert [m.role for m in store.messages(conv)] == ["user", "assistant"] * 2
        assert chat_settings(store, conv).system_prompt == "Talk like a pirate."
        (made,) = store.list_conversations()
        assert made.title_is_auto  # as the window titles a chat from its first message
    finally:
        store.close()


def test_a_missing_chosen_folder_gets_the_windows_sentence(data_dir: Path, tmp_path: Path) -> None:
    gone = tmp_path / "unplugged-disk" / "models"
    _write_settings(data_dir, {"storage.models_dir": str(gone)})
    result = hearth("chat", "--json", "--max-tokens", "2", "Hi", data_dir=data_dir)
    assert f"hearth: The models folder {gone} is not available" in result.stderr
    assert _stats(result)["model"] == str(data_dir / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf")
    assert not gone.exists()


def test_an_old_cli_chat_with_a_stored_system_message_keeps_it(data_dir: Path) -> None:
    """Before the system prompt was a setting, hearth chat stored it as a message."""
    store = ChatStore(data_dir / "hearth.sqlite3")
    try:
        conv = store.create_conversation("old").id
        store.add_message(conv, "system", "Old system prompt.")
        store.add_message(conv, "user", "Hi")
        store.add_message(conv, "assistant", "Hello.")
    finally:
        store.close()
    _write_settings(data_dir, {"generation.system_prompt": "Not for old chats."})
    shown = hearth("chat", "--conversation", str(conv), "--show-prompt", "Next", data_dir=data_dir)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.count("Old system prompt.") == 1 and "Not for old" not in shown.stdout
