"""Reading a file a person attaches: what kind it is, and its text with locations.

``extract(path)`` reads the file once; after that the file is not needed (the text
and its chunks are stored with the chat). Every failure is a ``DocumentError`` with
a sentence: a file that is gone, too big, encrypted, scanned, binary or damaged.
"""

from __future__ import annotations

from pathlib import Path, PurePath

from engine.documents.html import html_blocks
from engine.documents.office import read_docx
from engine.documents.pdf import read_pdf
from engine.documents.textfiles import decode, text_blocks
from engine.documents.types import DocKind, DocumentError, Extracted
from engine.units import format_bytes

__all__ = ["MAX_FILE_BYTES", "extract", "extract_bytes", "kind_of", "read_file"]

# A 1,000-page PDF is ~5-30 MB and a book in plain text ~1-3 MB; a file over this is
# a log or a dump that chunking would turn into ~20 million tokens no one reads.
MAX_FILE_BYTES = 64 * 1024 * 1024

_MARKDOWN = {".md", ".markdown", ".mdown", ".mkd", ".mdx"}
_CODE = {
    ".py", ".pyi", ".js", ".mjs", ".cjs", ".ts", ".tsx", ".jsx", ".c", ".h", ".cc", ".cpp",
    ".cxx", ".hpp", ".hh", ".m", ".mm", ".rs", ".go", ".java", ".kt", ".kts", ".swift",
    ".rb", ".php", ".cs", ".fs", ".sh", ".bash", ".zsh", ".fish", ".ps1", ".bat", ".sql",
    ".lua", ".r", ".scala", ".pl", ".hs", ".ml", ".ex", ".exs", ".erl", ".dart", ".vue",
    ".svelte", ".css", ".scss", ".less", ".json", ".jsonc", ".yaml", ".yml", ".toml",
    ".ini", ".cfg", ".conf", ".xml", ".env", ".properties", ".gradle", ".cmake", ".mk",
    ".tf", ".proto", ".graphql", ".ipynb", ".zig", ".nim", ".jl", ".clj", ".el", ".vim",
    ".diff", ".patch", ".gitignore", ".dockerfile", ".nix", ".qml",
}  # fmt: skip
_CODE_NAMES = {"makefile", "dockerfile", "cmakelists.txt", "gemfile", "rakefile", "justfile"}
_HTML = {".html", ".htm", ".xhtml"}
_CSV = {".csv", ".tsv"}
_REFUSED = {
    ".doc": "an old Word file (.doc)",
    ".xls": "an Excel workbook",
    ".xlsx": "an Excel workbook",
    ".ppt": "a PowerPoint file",
    ".pptx": "a PowerPoint file",
    ".odt": "an OpenDocument text",
    ".rtf": "an RTF document",
    ".epub": "an e-book",
}


def kind_of(name: str, head: bytes = b"") -> DocKind:
    """The kind of document a file is, by its content's signature, else by its name."""
    if head.startswith(b"%PDF-"):
        return DocKind.PDF
    suffix = PurePath(name).suffix.lower()
    if suffix == ".pdf":
        return DocKind.PDF
    if suffix == ".docx" or (head.startswith(b"PK\x03\x04") and b"word/" in head[:2048]):
        return DocKind.DOCX
    if suffix in _MARKDOWN:
        return DocKind.MARKDOWN
    if suffix in _HTML:
        return DocKind.HTML
    if suffix in _CSV:
        return DocKind.CSV
    if suffix in _CODE or PurePath(name).name.lower() in _CODE_NAMES:
        return DocKind.CODE
    return DocKind.TEXT


def extract(path: Path) -> Extracted:
    """The document at ``path``. Raises DocumentError with a sentence when it cannot."""
    return extract_bytes(path.name, read_file(path))


def read_file(path: Path) -> bytes:
    """A document file's bytes (refused over MAX_FILE_BYTES before reading)."""
    name = path.name
    try:
        size = path.stat().st_size
        if path.is_dir():
            raise DocumentError(f"{name} is a folder: attach the files in it one by one.")
        _check_size(name, size)
        return path.read_bytes()
    except FileNotFoundError as e:
        raise DocumentError(
            f"{name} is no longer there (it was moved or deleted after it was chosen): "
            "choose it again.",
        ) from e
    except PermissionError as e:
        raise DocumentError(
            f"Hearth is not allowed to read {name}: give your user read access to it, "
            "or copy it somewhere you own, and attach it again.",
        ) from e
    except OSError as e:
        raise DocumentError(
            f"{name} could not be read ({e.strerror or e}): check the disk or network "
            "drive it is on, and attach it again.",
        ) from e


def extract_bytes(name: str, data: bytes) -> Extracted:
    """The document in ``data`` (a file read already, or pasted), named ``name``."""
    _check_size(name, len(data))
    suffix = PurePath(name).suffix.lower()
    if suffix in _REFUSED and not data.startswith(b"%PDF-"):
        raise DocumentError(
            f"{name} is {_REFUSED[suffix]}, which Hearth cannot read yet: save it as PDF, "
            "DOCX or plain text and attach that."
        )
    kind = kind_of(name, data[:4096])
    if kind is DocKind.PDF:
        return read_pdf(name, data)
    if kind is DocKind.DOCX:
        return read_docx(name, data)
    text, encoding = decode(name, data)
    if not text.strip():
        raise DocumentError(f"{name} is empty: there is nothing in it to read.")
    blocks = html_blocks(text) if kind is DocKind.HTML else text_blocks(text, kind)
    if not blocks:
        raise DocumentError(f"{name} shows no text (only markup or scripts): nothing to read.")
    return Extracted(
        name,
        kind,
        blocks,
        size=len(data),
        lines=text.count("\n") + 1,
        encoding=encoding,
        source="" if kind is DocKind.HTML else text,
    )


def _check_size(name: str, size: int) -> None:
    if size > MAX_FILE_BYTES:
        raise DocumentError(
            f"{name} is {format_bytes(size)}; Hearth reads documents up to "
            f"{format_bytes(MAX_FILE_BYTES)}. Attach the part you need (for a log, the "
            "lines around the time in question) instead."
        )
