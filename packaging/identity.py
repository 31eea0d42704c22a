"""Hearth's publisher identity, read from packaging/identity.ini.

    python packaging/identity.py maintainer       -> Hearth developers <hearth@...>
    python packaging/identity.py bundle_id        -> io.github.hearth.Hearth

Used by hearth.spec (macOS bundle id, Windows version resource) and
build-deb.sh (the Debian Maintainer field); the Inno Setup script reads the
.ini itself. Standard library only.
"""

from __future__ import annotations

import configparser
import sys
from dataclasses import dataclass, fields
from pathlib import Path

INI = Path(__file__).resolve().with_name("identity.ini")


@dataclass(frozen=True)
class Identity:
    name: str
    publisher: str
    email: str
    bundle_id: str
    windows_app_id: str

    @property
    def maintainer(self) -> str:
        """The Debian Maintainer field: name and address."""
        return f"{self.publisher} <{self.email}>"


def identity(path: Path = INI) -> Identity:
    parser = configparser.ConfigParser(interpolation=None)
    if not parser.read(path, encoding="utf-8"):
        raise FileNotFoundError(path)
    section = parser["hearth"]
    return Identity(**{f.name: section[f.name].strip() for f in fields(Identity)})


def main(argv: list[str]) -> int:
    ident = identity()
    keys = [f.name for f in fields(Identity)] + ["maintainer"]
    if len(argv) != 1 or argv[0] not in keys:
        print(f"usage: identity.py {{{'|'.join(keys)}}}", file=sys.stderr)
        return 2
    print(getattr(ident, argv[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
