"""The test tiers: markers applied automatically, so nobody has to remember them, and the
fast tier's proof that it runs without llama.cpp. The hooks are imported by
tests/conftest.py (pytest finds hooks by name in a conftest module).

Markers (declared in pyproject.toml):
- ``model``: needs llama.cpp. Applied to every test that uses a real-model fixture (the
  starter model, its folder, a loaded session, ``data_dir``, ``launch``...), to every
  test in a module that imports llama_cpp, or something that imports it, at import time,
  and to every test whose own body, or one of whose fixtures' bodies, imports llama_cpp.
  A test that reaches llama_cpp only through Hearth's code is marked by hand (--fast
  finds it: see below).
- ``gui``: uses a QApplication (``qapp``, and so ``qtbot``).
- ``packaging``: under tests/packaging (builds and installs the frozen app).
- ``slow``: set by hand, and applied to every test that asks for a longer ``timeout``
  than pyproject's: it says itself that it may run for minutes.

``pytest --fast`` runs the everyday tier: ``not model and not slow and not packaging``
(and'ed with any ``-m`` given). In it, importing llama_cpp is refused and recorded:
- a test module that imports it at import time is left out (listed at the end of the
  run): all its tests need llama.cpp, so they are in the model tier anyway;
- a test that imports it (directly or through Hearth's code, even code that catches the
  ImportError) fails and says where, because it belongs in the model tier.
So a green ``--fast`` run proves that llama.cpp was never loaded in the test process
(tests/test_tiers.py shows the guard at work); child processes a test starts are not watched.

The full tier (``bash packaging/bootstrap.sh test``, what .ci/run runs) selects nothing:
it runs every test, these markers only label them.
"""

from __future__ import annotations

import importlib.abc
import sys
import traceback
from collections.abc import Generator, Sequence
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import ModuleType

import pytest

FAST_TIER = "not model and not slow and not packaging"
# Fixtures that load or hold a real model (item.fixturenames is the whole closure, so a
# fixture built on one of these, like data_dir on starter_models_dir, is covered too).
MODEL_FIXTURES = frozenset(
    {
        "starter_model_path",
        "starter_models_dir",
        "gemma_model_path",
        "qwen35_model_path",
        "smol_session",
        "qwen35_session",
        "gemma_session",
        "launch",
    }
)
LLAMA = "llama_cpp"
PACKAGING_DIR = Path(__file__).resolve().parent / "packaging"
LIBRARIES = tuple({sys.prefix, sys.base_prefix, sys.exec_prefix})


class LlamaCppInFastTier(ImportError):
    """llama_cpp was imported during a ``--fast`` run."""


class LlamaCppBlocker(importlib.abc.MetaPathFinder):
    """Refuses (and records) every import of llama_cpp; first on sys.meta_path."""

    def __init__(self) -> None:
        self.attempts: list[str] = []  # the stack of each attempt, innermost last

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> ModuleSpec | None:
        if fullname.split(".")[0] != LLAMA:
            return None
        # Only the frames of the tests and Hearth's code (not Python's, pytest's or
        # another library's): they say who asked.
        frames = [
            f
            for f in traceback.extract_stack()[:-1]
            if not f.filename.startswith(LIBRARIES) and not f.filename.startswith("<")
        ]
        stack = "".join(traceback.format_list(frames[-12:]))
        self.attempts.append(stack)
        raise LlamaCppInFastTier(
            "the fast tier (--fast) runs without llama.cpp, but llama_cpp was imported:\n"
            f"{stack}"
            "If this test needs llama.cpp it belongs to the model tier: give it a model "
            "fixture (tests/unit/conftest.py) or mark it @pytest.mark.model."
        )


BLOCKER = pytest.StashKey[LlamaCppBlocker]()
LEFT_OUT = pytest.StashKey[list[str]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--fast",
        action="store_true",
        help=f"the everyday tier: only '{FAST_TIER}', and fail if llama_cpp is imported",
    )


def pytest_configure(config: pytest.Config) -> None:
    if not config.getoption("fast"):
        return
    if LLAMA in sys.modules:
        raise pytest.UsageError(
            "--fast: llama_cpp was imported before the tests started (by a plugin or "
            "conftest?), so this run could not prove that the fast tier needs no llama.cpp."
        )
    given = config.option.markexpr
    config.option.markexpr = f"({given}) and ({FAST_TIER})" if given else FAST_TIER
    blocker = LlamaCppBlocker()
    sys.meta_path.insert(0, blocker)
    config.stash[BLOCKER] = blocker
    config.stash[LEFT_OUT] = []
    config.add_cleanup(lambda: sys.meta_path.remove(blocker))


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """--fast does not even import tests/packaging (all of it is the packaging tier)."""
    if config.getoption("fast") and collection_path.is_relative_to(PACKAGING_DIR):
        return True
    return None


def _module_needs_llama(module: ModuleType) -> bool:
    """Whether the test module holds llama_cpp, or something from a module that does
    (``from engine.inference.session import ChatSession``)."""
    for value in vars(module).values():
        name = (
            value.__name__ if isinstance(value, ModuleType) else getattr(value, "__module__", None)
        )
        if not isinstance(name, str):
            continue
        if name.split(".")[0] == LLAMA:
            return True
        owner = sys.modules.get(name)
        if owner is not None and owner is not module and LLAMA in vars(owner):
            return True
    return False


def _code_imports_llama(function: object) -> bool:
    """Whether a test or fixture function imports llama_cpp in its own body (an import
    statement puts the module's name in the code object's names)."""
    code = getattr(getattr(function, "__wrapped__", function), "__code__", None)
    return code is not None and LLAMA in code.co_names


def _item_imports_llama(item: pytest.Item) -> bool:
    if _code_imports_llama(getattr(item, "function", None)):
        return True
    info = getattr(item, "_fixtureinfo", None)  # which fixture functions this test runs
    definitions = getattr(info, "name2fixturedefs", {}) if info is not None else {}
    return any(_code_imports_llama(defs[-1].func) for defs in definitions.values() if defs)


_NEEDS_LLAMA: dict[str, bool] = {}


def pytest_itemcollected(item: pytest.Item) -> None:
    names = set(getattr(item, "fixturenames", ()))
    if Path(item.path).is_relative_to(PACKAGING_DIR):
        item.add_marker(pytest.mark.packaging)
    if "qapp" in names:
        item.add_marker(pytest.mark.gui)
    module = item.getparent(pytest.Module)
    if module is not None and module.nodeid not in _NEEDS_LLAMA:
        _NEEDS_LLAMA[module.nodeid] = _module_needs_llama(module.obj)
    if (
        names & MODEL_FIXTURES
        or (module is not None and _NEEDS_LLAMA[module.nodeid])
        or _item_imports_llama(item)
    ):
        item.add_marker(pytest.mark.model)
    limit = item.get_closest_marker("timeout")
    default = float(item.config.getini("timeout") or 0)
    if limit is not None and limit.args and default and float(limit.args[0]) > default:
        item.add_marker(pytest.mark.slow)


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(
    collector: pytest.Collector,
) -> Generator[None, pytest.CollectReport, pytest.CollectReport]:
    blocker = collector.config.stash.get(BLOCKER, None)
    before = len(blocker.attempts) if blocker is not None else 0
    report = yield
    if (
        blocker is not None
        and isinstance(collector, pytest.Module)
        and report.failed
        and len(blocker.attempts) > before
    ):
        # Every test in it needs llama.cpp to be imported at all: the model tier's.
        collector.config.stash[LEFT_OUT].append(collector.nodeid)
        del blocker.attempts[before:]
        return pytest.CollectReport(collector.nodeid, "passed", None, [])
    return report


SEEN = pytest.StashKey[int]()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    blocker = item.config.stash.get(BLOCKER, None)
    if blocker is not None:
        item.stash[SEEN] = len(blocker.attempts)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Fail the phase (setup, call, teardown) of a --fast test in which llama_cpp was
    asked for, even if the ImportError was caught and the test passed."""
    report = yield
    blocker = item.config.stash.get(BLOCKER, None)
    if blocker is None:
        return report
    seen = item.stash.get(SEEN, len(blocker.attempts))
    new = blocker.attempts[seen:]
    item.stash[SEEN] = len(blocker.attempts)
    if new:
        report.outcome = "failed"
        report.longrepr = (
            "the fast tier runs without llama.cpp, but this test imported llama_cpp "
            "(the ImportError may have been caught on the way):\n"
            + "\n".join(new)
            + "\nGive it a model fixture or mark it @pytest.mark.model."
        )
    return report


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    blocker = config.stash.get(BLOCKER, None)
    if blocker is None:
        return
    write = terminalreporter.write_line
    left_out = config.stash[LEFT_OUT]
    if left_out:
        write(f"--fast: left out {len(left_out)} module(s) that import llama_cpp when imported:")
        for nodeid in left_out:
            write(f"    {nodeid}")
    if blocker.attempts:
        write(f"--fast: {len(blocker.attempts)} import(s) of {LLAMA} refused: see above", red=True)
    else:
        write(f"--fast: nothing in this process asked for {LLAMA}", green=True)
