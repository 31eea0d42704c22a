"""Walking a conversation's message tree, given its rows (no SQL here).

A row starts with ``(id, parent_id, chosen, ...)``. Messages with the same
parent are versions of one turn; the shown one has the highest ``chosen``
(ties: the newest).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

Row = tuple[Any, ...]
Children = dict[int | None, list[Row]]


def _shown(siblings: Sequence[Row]) -> Row:
    return max(siblings, key=lambda r: (r[2], r[0]))


def children_of(rows: Sequence[Row]) -> Children:
    """Rows grouped by parent (None: the first turn), each group in the rows' order."""
    children: Children = {}
    for row in rows:
        children.setdefault(row[1], []).append(row)
    return children


def active_path(children: Children) -> list[Row]:
    """From the first turn, the shown version of each turn, until a turn has no reply."""
    path: list[Row] = []
    total = sum(len(group) for group in children.values())
    parent: int | None = None
    while (siblings := children.get(parent)) and len(path) < total:  # total: a cycle guard
        row = _shown(siblings)
        path.append(row)
        parent = row[0]
    return path


def activate(children: Children, by_id: Mapping[int, Row], msg_id: int) -> list[tuple[int, int]]:
    """The (id, new chosen) changes that put ``msg_id`` and its ancestors on the active path."""
    changes: list[tuple[int, int]] = []
    node: int | None = msg_id
    seen: set[int] = set()
    while node is not None and node in by_id and node not in seen:
        seen.add(node)
        row = by_id[node]
        siblings = children[row[1]]
        if _shown(siblings) is not row:
            changes.append((node, max(r[2] for r in siblings) + 1))
        node = row[1]
    return changes


def subtree(children: Children, msg_id: int) -> list[int]:
    """``msg_id`` and every message after it on any branch."""
    out: list[int] = []
    todo = [msg_id]
    while todo:
        node = todo.pop()
        out.append(node)
        todo.extend(r[0] for r in children.get(node, ()))
    return out
