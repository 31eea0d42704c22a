"""``hearth chat --endpoint`` and ``hearth endpoints`` against llama-cpp-python's own
server (``llama_cpp.server``, a real OpenAI-compatible server) on the real starter
model, on 127.0.0.1; in-process, with the loopback guard on (nothing else is touched).

``hearth endpoints`` is not yet wired into app/main.py's parser (another helper owns
it): its parser is built here from ``add_endpoints_parser``, as main.py will.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import keyring
import pytest
from keyring.backend import KeyringBackend

from app.cli_remote import add_endpoints_parser, run_endpoints
from app.main import main
from app.paths import resolve_paths
from engine.history.export import export_json, import_json
from engine.history.store import ChatStore
from engine.history.types import MessageStatus
from tests.openai_servers import LlamaServer, LoopbackGuard

STARTER = "SmolLM2-135M-Instruct.Q4_1.gguf"


class MemoryKeyring(KeyringBackend):
    """An in-memory keyring (keyring ships none; this machine has no Secret Service)."""

    priority = 1

    def __init__(self) -> None:
        self.entries: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.entries.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.entries[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        self.entries.pop((service, username), None)


@pytest.fixture(autouse=True)
def guard() -> Iterator[LoopbackGuard]:
    with LoopbackGuard.get().watching() as g:
        yield g


@pytest.fixture
def memory_keyring() -> Iterator[MemoryKeyring]:
    before = keyring.get_keyring()
    ring = MemoryKeyring()
    keyring.set_keyring(ring)
    yield ring
    keyring.set_keyring(before)


@pytest.fixture(scope="module")
def server(
    starter_models_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LlamaServer]:
    log = tmp_path_factory.mktemp("llama-server") / "server.log"
    with LlamaServer(starter_models_dir / STARTER, api_key="k-123", log=log) as running:
        yield running


def endpoints(data_dir: Path, *argv: str) -> int:
    parser = argparse.ArgumentParser(prog="hearth")
    add_endpoints_parser(parser.add_subparsers(dest="command"))
    return run_endpoints(parser.parse_args(["endpoints", *argv]), resolve_paths(data_dir))


def test_chat_through_a_named_connection(
    server: LlamaServer,
    data_dir: Path,
    tmp_path: Path,
    memory_keyring: MemoryKeyring,
    capsys: pytest.CaptureFixture[str],
    guard: LoopbackGuard,
) -> None:
    key_file = tmp_path / "key"
    key_file.write_text("k-123\n")
    assert endpoints(data_dir, "add", "box", server.base_url, "--api-key-file", str(key_file)) == 0
    assert memory_keyring.entries == {("Hearth", "connection:box"): "k-123"}
    config = resolve_paths(data_dir).config_dir
    assert "k-123" not in (config / "connections.json").read_text()
    assert endpoints(data_dir, "check", "box") == 0
    assert endpoints(data_dir, "list", "--json") == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1] == f"Connected to 127.0.0.1:{server.port}: 1 model (smollm2)."
    assert json.loads(out[2]) == [{"name": "box", "base_url": server.base_url, "model": ""}]

    argv = ["--data-dir", str(data_dir), "chat", "--endpoint", "box", "--max-tokens", "6"]
    assert main([*argv, "--json", "Hello there"]) == 0
    captured = capsys.readouterr()
    assert f"this chat goes to smollm2 at 127.0.0.1:{server.port}" in captured.err
    reply, stats = captured.out.rstrip("\n").rsplit("\n", 1)
    line = json.loads(stats)
    assert line["completion_tokens"] == 6 and line["endpoint"] == server.base_url
    # A second turn in the same chat, through the server again.
    assert main([*argv, "--conversation", str(line["conversation_id"]), "And then?"]) == 0
    capsys.readouterr()

    with ChatStore(resolve_paths(data_dir).db_path) as store:
        messages = store.messages(line["conversation_id"])
        assert [m.role for m in messages] == ["user", "assistant", "user", "assistant"]
        assert messages[1].content == reply
        assert messages[1].status is MessageStatus.LENGTH
        assert messages[1].model == f"{server.base_url}/models/smollm2"
        assert messages[0].model == ""
        # The model that wrote each reply survives export and import.
        exported = "".join(export_json(store))
        new_id = import_json(store, exported)[0]
        assert store.messages(new_id)[3].model == messages[3].model
    assert guard.seen == []

    assert endpoints(data_dir, "remove", "box") == 0
    assert memory_keyring.entries == {}


def test_hearth_endpoints_from_the_command_line(
    data_dir: Path, memory_keyring: MemoryKeyring, capsys: pytest.CaptureFixture[str]
) -> None:
    # `hearth endpoints …` as typed: through app/main.py's parser and dispatch.
    base = ["--data-dir", str(data_dir), "endpoints"]
    assert main([*base, "add", "box", "http://127.0.0.1:9/v1", "--model", "smollm2"]) == 0
    assert main([*base, "list"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == ["Added box: http://127.0.0.1:9/v1", "box\thttp://127.0.0.1:9/v1\tsmollm2"]
    assert main([*base, "remove", "box"]) == 0
    assert main([*base, "remove", "box"]) == 1
    captured = capsys.readouterr()
    assert captured.out == "Removed box.\n"
    assert 'there is no connection named "box"' in captured.err
    assert main([*base, "list"]) == 0
    assert "No connections" in capsys.readouterr().out


def test_a_wrong_key_saves_nothing(
    server: LlamaServer, data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key_file = tmp_path / "key"
    key_file.write_text("wrong\n")
    argv = ["--data-dir", str(data_dir), "chat", "--endpoint", server.base_url, "Hi"]
    assert main([*argv[:-1], "--api-key-file", str(key_file), "Hi"]) == 1
    err = capsys.readouterr().err
    assert "did not accept the API key" in err and "wrong" not in err
    db = resolve_paths(data_dir).db_path
    with closing(sqlite3.connect(db)) as conn:
        assert conn.execute("SELECT count(*) FROM conversations").fetchone() == (0,)


def test_plain_http_to_another_computer_warns(
    data_dir: Path, capsys: pytest.CaptureFixture[str], guard: LoopbackGuard
) -> None:
    argv = ["--data-dir", str(data_dir), "chat", "--endpoint", "http://gpu-box:8000", "Hi"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "warning: The connection to gpu-box:8000 is plain http://, not encrypted" in err
    # The guard answered the lookup as a failed DNS query: no resolver was asked.
    assert "could not be found (DNS)" in err
    assert guard.seen == ["socket.getaddrinfo 'gpu-box'"]
    guard.seen.clear()


def test_refusals_before_anything_is_sent(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["--data-dir", str(data_dir), "chat"]
    assert main([*base, "--endpoint", "nowhere", "Hi"]) == 1
    assert 'There is no connection named "nowhere"' in capsys.readouterr().err
    assert main([*base, "--endpoint", "http://127.0.0.1:9/v1", "--show-prompt", "Hi"]) == 2
    assert "--show-prompt is for a model on this computer" in capsys.readouterr().err
    assert endpoints(data_dir, "add", "x", "gpu-box:8000") == 2
    assert "is not a server address" in capsys.readouterr().err
