"""engine.inference.loader.load_backends: registering llama.cpp's backends before the first load.

The shipped llama.cpp (GGML_BACKEND_DL, packaging/llama-build.md) registers no
backend until asked; the dev venv's has the CPU backend linked in. These tests
run against the dev build for real (it must be left alone) and drive the
other two cases (a DL build, a machine where nothing loads) through a stand-in
for ggml's registry. The DL build itself is checked end to end by hand, frozen
in the .deb (packaging/README.md, "Portable llama.cpp, verified by hand").
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from engine.errors import KnownError, ModelLoadError
from engine.inference import loader as llama_load
from engine.inference.loader import _GgmlRegistry, backend_folders, load_backends, load_llama
from engine.types import EngineOptions


class SpyRegistry(_GgmlRegistry):
    """The real registry, recording every request to load backends from a folder."""

    def __init__(self) -> None:
        super().__init__()
        self.loaded_from: list[Path] = []

    def load_all_from(self, folder: Path) -> None:
        self.loaded_from.append(folder)
        super().load_all_from(folder)


class FakeRegistry:
    """ggml's registry as a GGML_BACKEND_DL build has it: empty until a folder with
    backends is loaded (``backends_in``: which folder holds them, if any)."""

    def __init__(self, backends_in: Path | None) -> None:
        self.backends_in = backends_in
        self.loaded_from: list[Path] = []
        self._names: list[str] = []

    def count(self) -> int:
        return len(self._names)

    def names(self) -> list[str]:
        return list(self._names)

    def load_all_from(self, folder: Path) -> None:
        self.loaded_from.append(folder)
        if folder == self.backends_in:
            self._names.append("CPU")


@pytest.fixture
def fresh(monkeypatch: pytest.MonkeyPatch) -> None:
    """As in a new process: nothing registered by Hearth yet."""
    monkeypatch.setattr(llama_load, "_backend_count", None)


def test_dev_build_has_its_backend_linked_in_and_is_left_alone(
    fresh: None, caplog: pytest.LogCaptureFixture
) -> None:
    spy = SpyRegistry()
    before = spy.count()
    assert before >= 1, "the dev venv's llama.cpp is expected to have the CPU backend linked in"
    with caplog.at_level(logging.INFO, logger="engine.inference.loader"):
        assert load_backends(spy) == before
    assert spy.loaded_from == []  # not even an attempt: nothing to load, nothing to break
    assert spy.count() == before
    assert "CPU" in spy.names()
    assert f"llama.cpp backends (linked in): {', '.join(spy.names())}" in caplog.text


def test_the_real_registry_is_asked_once_per_process(fresh: None) -> None:
    first = load_backends()
    assert first >= 1
    assert llama_load._backend_count == first
    assert load_backends() == first  # cached: the second call touches nothing


def test_a_dl_build_loads_from_the_first_folder_that_has_backends(
    fresh: None, caplog: pytest.LogCaptureFixture
) -> None:
    frozen, pip_installed = backend_folders()
    assert frozen.name == "lib" and frozen.parent.name == "llama_cpp"
    assert pip_installed.name == "bin"
    fake = FakeRegistry(backends_in=frozen)
    with caplog.at_level(logging.INFO, logger="engine.inference.loader"):
        assert load_backends(fake) == 1
    assert fake.loaded_from == [frozen]  # found there: the pip folder is not tried
    assert "llama.cpp backends (loaded): CPU" in caplog.text


def test_no_loadable_backend_is_a_known_error_with_a_sentence(fresh: None) -> None:
    fake = FakeRegistry(backends_in=None)
    with pytest.raises(ModelLoadError) as raised:
        load_backends(fake)
    error = raised.value
    assert isinstance(error, KnownError)
    assert error.message.startswith("Hearth cannot run models on this computer")
    assert "Reinstall Hearth" in error.message
    assert "no ggml backend registered" in error.detail
    tried = [f for f in backend_folders() if f.is_dir()]
    assert fake.loaded_from == tried
    assert llama_load._backend_count is None  # the next load tries again


def test_load_llama_registers_backends_before_touching_the_model(
    fresh: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(llama_load, "_GgmlRegistry", lambda: FakeRegistry(backends_in=None))
    with pytest.raises(ModelLoadError, match="cannot run models on this computer"):
        load_llama(tmp_path / "never-opened.gguf", EngineOptions())
