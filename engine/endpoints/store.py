"""The connections a person has named: ``connections.json`` in the config folder.

Only names, addresses and a default model are written here; an API key never is
(``engine.endpoints.keys`` keeps it in the system keyring). The file is replaced
atomically (write, fsync, rename), so a crash leaves the old list or the new one.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from engine.errors import KnownError

__all__ = ["Endpoint", "EndpointStore", "EndpointStoreError"]

# NOTE: stored on disk (connections.json); keep the field names stable.
_VERSION = 1


class EndpointStoreError(KnownError):
    """The connections file cannot be read or written."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Endpoint:
    name: str  # what the person calls it: "gpu-box", "team vLLM"
    base_url: str  # http(s)://host:port/v1, normalized by whoever adds it
    model: str = ""  # the model to use when none is named; "" = the server's only one


def check_name(name: str) -> str:
    """``name`` trimmed; ``ValueError`` with a sentence when it cannot be a name."""
    name = name.strip()
    if not name or "://" in name or not name.isprintable() or len(name) > 64:
        raise ValueError(
            "A connection's name is a short word or two, like gpu-box (not an address)."
        )
    return name


class EndpointStore:
    """Reads and writes ``path``. Cheap; re-reads the file on every call, so the window
    and a ``hearth endpoints`` command in another process see each other's changes."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def all(self) -> list[Endpoint]:
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as exc:
            raise EndpointStoreError(
                f"The list of connections ({self.path}) cannot be read. Fix or delete the file, "
                "then add the connections again.",
                detail=repr(exc),
            ) from exc
        found = []
        for item in raw.get("connections", []) if isinstance(raw, dict) else []:
            if isinstance(item, dict) and isinstance(item.get("name"), str):
                found.append(
                    Endpoint(
                        name=item["name"],
                        base_url=str(item.get("base_url", "")),
                        model=str(item.get("model", "")),
                    )
                )
        return found

    def get(self, name: str) -> Endpoint | None:
        wanted = name.strip().casefold()
        return next((e for e in self.all() if e.name.casefold() == wanted), None)

    def put(self, endpoint: Endpoint) -> None:
        """Add ``endpoint``, or replace the one with its name."""
        name = check_name(endpoint.name)
        kept = [e for e in self.all() if e.name.casefold() != name.casefold()]
        self._write([*kept, Endpoint(name=name, base_url=endpoint.base_url, model=endpoint.model)])

    def remove(self, name: str) -> bool:
        """Forget the connection named ``name``; False if there was none."""
        endpoints = self.all()
        kept = [e for e in endpoints if e.name.casefold() != name.strip().casefold()]
        if len(kept) == len(endpoints):
            return False
        self._write(kept)
        return True

    def _write(self, endpoints: list[Endpoint]) -> None:
        data = {"version": _VERSION, "connections": [asdict(e) for e in endpoints]}
        text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=self.path.name + ".")
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as out:
                    out.write(text)
                    out.flush()
                    os.fsync(out.fileno())
                os.replace(tmp, self.path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise EndpointStoreError(
                f"The list of connections could not be saved in {self.path.parent} "
                f"({exc.strerror or exc}). Check that the folder is writable and the disk "
                "has room.",
                detail=repr(exc),
            ) from exc
