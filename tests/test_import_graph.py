"""The import graph of app, ui and engine has no cycle (maint/check_cycles.py), and the
check itself sees one when there is one."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from maint.check_cycles import find_cycles, main, strongly_connected


def test_app_ui_and_engine_have_no_import_cycle() -> None:
    cycles = find_cycles()
    if cycles:
        pytest.fail("\n".join(cycle.describe() for cycle in cycles), pytrace=False)


def write_package(root: Path, name: str, modules: dict[str, str]) -> None:
    package = root / name
    package.mkdir()
    (package / "__init__.py").write_text("")
    for module, source in modules.items():
        (package / f"{module}.py").write_text(textwrap.dedent(source))


def test_the_check_reports_every_kind_of_cycle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    write_package(
        tmp_path,
        "tangled",
        {
            # a -> b at run time, b -> a only for the type checker
            "a": "from tangled import b\n",
            "b": """
                from typing import TYPE_CHECKING
                if TYPE_CHECKING:
                    from tangled.a import thing
                """,
            # c -> d -> e -> c, the last edge inside a function
            "c": "import tangled.d\n",
            "d": "import tangled.e\n",
            "e": """
                def late():
                    import tangled.c
                """,
            "leaf": "import tangled.a\n",  # imports into a cycle, is not part of one
        },
    )
    monkeypatch.syspath_prepend(str(tmp_path))

    cycles = find_cycles(["tangled"])

    assert [c.modules for c in cycles] == [
        ("tangled.a", "tangled.b"),
        ("tangled.c", "tangled.d", "tangled.e"),
    ]
    first, second = cycles
    assert [(e.importer, e.type_checking_only) for e in first.path] == [
        ("tangled.a", False),
        ("tangled.b", True),
    ]
    assert [(e.importer, e.in_function) for e in second.path] == [
        ("tangled.c", False),
        ("tangled.d", False),
        ("tangled.e", True),
    ]
    assert main(["tangled"]) == 1
    out = capsys.readouterr()
    assert "tangled.a -> tangled.b -> tangled.a" in out.out
    assert "from tangled.a import thing  [TYPE_CHECKING only]" in out.out
    assert "import tangled.c  [inside a function]" in out.out
    assert "2 import cycle(s) in tangled" in out.err


def test_a_graph_without_cycles_passes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    write_package(tmp_path, "layered", {"top": "import layered.low\n", "low": ""})
    monkeypatch.syspath_prepend(str(tmp_path))

    assert main(["layered"]) == 0
    assert "no import cycles in layered" in capsys.readouterr().out


def test_strongly_connected_finds_nested_and_self_contained_rings() -> None:
    graph = {
        "a": frozenset({"b"}),
        "b": frozenset({"c", "a"}),
        "c": frozenset({"b", "d"}),
        "d": frozenset(),
        "x": frozenset({"y"}),
        "y": frozenset({"x"}),
        "z": frozenset({"z"}),  # a module importing itself is no cycle between modules
    }
    assert strongly_connected(graph) == [("a", "b", "c"), ("x", "y")]
