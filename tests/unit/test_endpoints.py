"""Named connections (engine.endpoints): the list in connections.json, the keys out of it."""

from __future__ import annotations

from pathlib import Path

import keyring.backends.fail
import pytest

from engine.endpoints.keys import KeyStore
from engine.endpoints.store import Endpoint, EndpointStore, EndpointStoreError


def test_add_replace_remove(tmp_path: Path) -> None:
    store = EndpointStore(tmp_path / "config" / "connections.json")
    assert store.all() == []
    store.put(Endpoint(name=" gpu-box ", base_url="http://gpu-box:8000/v1"))
    store.put(Endpoint(name="team", base_url="https://llm.example/v1", model="qwen3.5-27b"))
    store.put(Endpoint(name="GPU-box", base_url="http://gpu-box:9000/v1"))  # same name
    assert [(e.name, e.base_url) for e in store.all()] == [
        ("team", "https://llm.example/v1"),
        ("GPU-box", "http://gpu-box:9000/v1"),
    ]
    assert store.get("gpu-BOX") == Endpoint(name="GPU-box", base_url="http://gpu-box:9000/v1")
    assert store.remove("gpu-box") and not store.remove("gpu-box")
    assert [e.name for e in EndpointStore(store.path).all()] == ["team"]
    with pytest.raises(ValueError, match="not an address"):
        store.put(Endpoint(name="http://x", base_url="http://x/v1"))


def test_a_damaged_file_is_a_sentence(tmp_path: Path) -> None:
    path = tmp_path / "connections.json"
    path.write_text("{not json")
    with pytest.raises(EndpointStoreError, match=r"cannot be read\. Fix or delete the file"):
        EndpointStore(path).all()


def test_without_a_keyring_keys_live_for_this_run() -> None:
    keys = KeyStore(keyring.backends.fail.Keyring())  # type: ignore[no-untyped-call]
    assert not keys.kept and "kept only until Hearth closes" in keys.note
    keys.set("box", " sk-1 ")
    assert keys.get("BOX") == "sk-1" and "sk-1" not in repr(keys)
    keys.forget("box")
    assert keys.get("box") is None
    with pytest.raises(ValueError, match="one word without spaces"):
        keys.set("box", "two words")
