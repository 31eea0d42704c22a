"""Reading attached documents (engine.documents): real files made at test time (a PDF
with a text layer, a scanned one, an encrypted one, DOCX, HTML, CSV, Markdown, code),
their text with pages and lines, chunking by structure, and a sentence for every file
that cannot be read."""

from __future__ import annotations

import codecs
import itertools
from pathlib import Path

import pytest

from engine.documents.chunking import CHUNK_TOKENS, chunk_blocks, chunk_document
from engine.documents.extract import MAX_FILE_BYTES, extract, extract_bytes, kind_of
from engine.documents.tokens import estimate_tokens
from engine.documents.types import Block, BlockKind, DocKind, DocumentError
from engine.units import location_label
from tests.fixtures.documents import (
    docx_file,
    encrypted_pdf,
    pdf_bytes,
    scanned_pdf,
    zip_bomb_docx,
)


def test_pdf_text_layer_with_page_numbers(tmp_path: Path) -> None:
    path = tmp_path / "report.pdf"
    path.write_bytes(
        pdf_bytes([["Quarterly report", "Costs rose (slightly)."], ["Revenue fell by 3%."]])
    )
    doc = extract(path)
    assert doc.kind is DocKind.PDF and doc.pages == 2
    assert [(b.page, b.text) for b in doc.blocks] == [
        (1, "Quarterly report\nCosts rose (slightly)."),
        (2, "Revenue fell by 3%."),
    ]
    assert doc.tokens == estimate_tokens(doc.text) > 0


def test_pdf_by_content_whatever_its_name() -> None:
    assert extract_bytes("download", pdf_bytes([["Hello"]])).kind is DocKind.PDF


def test_scanned_pdf_says_there_is_no_text_and_no_ocr() -> None:
    with pytest.raises(DocumentError, match=r"scan\.pdf has no text.*images.*no OCR"):
        extract_bytes("scan.pdf", scanned_pdf(3))


def test_encrypted_pdf_asks_for_a_copy_without_password() -> None:
    with pytest.raises(DocumentError, match=r"locked\.pdf is protected by a password"):
        extract_bytes("locked.pdf", encrypted_pdf())


def test_pdf_with_empty_user_password_opens() -> None:
    """Many PDFs are encrypted only to set permissions: they open without a password."""
    import io

    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(pdf_bytes([["Open to all."]]))))
    writer.encrypt(user_password="", owner_password="owner", algorithm="AES-128")
    out = io.BytesIO()
    writer.write(out)
    assert extract_bytes("perm.pdf", out.getvalue()).text == "Open to all."


def test_damaged_pdf_is_a_sentence() -> None:
    with pytest.raises(DocumentError, match=r"bad\.pdf could not be read as a PDF"):
        extract_bytes("bad.pdf", b"%PDF-1.4\n garbage")


def test_docx_headings_lists_and_tables_in_order(tmp_path: Path) -> None:
    doc = extract(docx_file(tmp_path / "garden.docx"))
    assert doc.kind is DocKind.DOCX
    assert [(b.kind, b.level, b.text) for b in doc.blocks] == [
        (BlockKind.HEADING, 1, "Garden Handbook"),
        (BlockKind.HEADING, 1, "Tomatoes"),
        (BlockKind.PARAGRAPH, 0, "Tomatoes need six hours of sun and deep watering twice a week."),
        (BlockKind.PARAGRAPH, 0, "- Stake them early."),
        (BlockKind.HEADING, 2, "Pests"),
        (BlockKind.PARAGRAPH, 0, "Aphids are washed off with a jet of water."),
        (BlockKind.TABLE, 0, "Plant | Spacing\nBasil | 20 cm"),
    ]


def test_docx_zip_bomb_is_refused_before_unpacking(tmp_path: Path) -> None:
    with pytest.raises(DocumentError, match=r"bomb\.docx would unpack to 315 MB"):
        extract(zip_bomb_docx(tmp_path / "bomb.docx"))


def test_docx_that_is_not_a_zip(tmp_path: Path) -> None:
    with pytest.raises(DocumentError, match=r"fake\.docx is not a Word document"):
        extract_bytes("fake.docx", b"just text, renamed")


def test_old_word_file_gets_a_sentence() -> None:
    with pytest.raises(DocumentError, match=r"notes\.doc is an old Word file"):
        extract_bytes("notes.doc", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 100)


HTML = """<!doctype html>
<html><head><title>Trail guide</title>
<style>body { color: red }</style>
<script>var secret = "do not read";</script></head>
<body>
<nav><a href="/">Home</a></nav>
<h1>North ridge</h1>
<p>The ridge   trail is <b>12 km</b> long
and climbs 800&nbsp;m.</p>
<pre>
gpx = load("ridge.gpx")
print(gpx.length)
</pre>
<ul><li>Bring water</li><li>Start early</li></ul>
<table><tr><th>Hut</th><th>Beds</th></tr><tr><td>Alpha</td><td>12</td></tr></table>
</body></html>
"""


def test_html_text_without_scripts_or_styles() -> None:
    doc = extract_bytes("guide.html", HTML.encode())
    assert doc.kind is DocKind.HTML
    texts = [(b.kind, b.text, b.line) for b in doc.blocks]
    assert texts == [
        (BlockKind.HEADING, "Trail guide", 2),
        (BlockKind.PARAGRAPH, "Home", 6),
        (BlockKind.HEADING, "North ridge", 7),
        (BlockKind.PARAGRAPH, "The ridge trail is 12 km long and climbs 800 m.", 8),
        (BlockKind.CODE, 'gpx = load("ridge.gpx")\nprint(gpx.length)', 10),
        (BlockKind.PARAGRAPH, "- Bring water", 14),
        (BlockKind.PARAGRAPH, "- Start early", 14),
        (BlockKind.PARAGRAPH, "Hut | Beds", 15),
        (BlockKind.PARAGRAPH, "Alpha | 12", 15),
    ]
    assert "secret" not in doc.text and "color" not in doc.text


MARKDOWN = """Setup
=====

Install it with pip.

## Configure

Edit the file:

```toml
[server]
port = 8080

host = "::"
```

# Use
Run `serve`.
"""


def test_markdown_headings_code_fences_and_lines() -> None:
    doc = extract_bytes("README.md", MARKDOWN.encode())
    assert [(b.kind, b.level, b.line, b.text.split("\n")[0]) for b in doc.blocks] == [
        (BlockKind.HEADING, 1, 1, "Setup"),
        (BlockKind.PARAGRAPH, 0, 4, "Install it with pip."),
        (BlockKind.HEADING, 2, 6, "Configure"),
        (BlockKind.PARAGRAPH, 0, 8, "Edit the file:"),
        (BlockKind.CODE, 0, 10, "```toml"),
        (BlockKind.HEADING, 1, 17, "Use"),
        (BlockKind.PARAGRAPH, 0, 18, "Run `serve`."),
    ]
    # the fence is one block, blank line included
    assert doc.blocks[4].text.count("\n") == 5


def test_code_file_blocks_keep_line_numbers() -> None:
    source = "import os\n\n\ndef a():\n    return 1\n\n\ndef b():\n    return 2\n"
    doc = extract_bytes("m.py", source.encode())
    assert doc.kind is DocKind.CODE
    assert [(b.line, b.kind) for b in doc.blocks] == [
        (1, BlockKind.CODE),
        (4, BlockKind.CODE),
        (8, BlockKind.CODE),
    ]
    assert doc.lines == 10


def test_csv_header_heads_every_chunk() -> None:
    rows = ["city,population"] + [f"town{i},{i * 100}" for i in range(60)]
    doc = extract_bytes("towns.csv", "\n".join(rows).encode())
    assert doc.blocks[0] == Block("city,population", BlockKind.HEADING, line=1, level=1)
    chunks = chunk_document(doc, target=60, overlap=0)
    assert len(chunks) > 2
    assert all(c.heading == "city,population" for c in chunks)
    assert chunks[0].line_start == 2
    last = chunks[-1]
    assert last.line_end == 61 and last.text.endswith("town59,5900")


def test_csv_record_spanning_lines_stays_whole() -> None:
    text = 'name,note\nann,"line one\nline two"\nbob,short\n'
    doc = extract_bytes("notes.csv", text.encode())
    assert doc.blocks[1].text == 'ann,"line one\nline two"\nbob,short'


@pytest.mark.parametrize(
    ("data", "encoding", "text"),
    [
        ("naïve café".encode(), "utf-8", "naïve café"),
        (codecs.BOM_UTF8 + "naïve".encode(), "utf-8-sig", "naïve"),
        ("naïve".encode("utf-16"), "utf-16", "naïve"),
        ("plain".encode("utf-16-le") * 4, "utf-16-le", "plain" * 4),
        ("naïve café “quoted”".encode("cp1252"), "cp1252", "naïve café “quoted”"),
        (b"caf\xe9 \x81", "latin-1", "café \x81"),  # 0x81 is not in Windows-1252
        (b"one\r\ntwo\rthree", "utf-8", "one\ntwo\nthree"),
    ],
)
def test_text_encodings_decode_without_loss(data: bytes, encoding: str, text: str) -> None:
    doc = extract_bytes("notes.txt", data)
    assert (doc.encoding, doc.text) == (encoding, text)


def test_binary_named_txt_is_refused() -> None:
    data = bytes(range(256)) * 20
    with pytest.raises(DocumentError, match=r"notes\.txt is not text \(it holds binary data"):
        extract_bytes("notes.txt", data)


def test_empty_file() -> None:
    with pytest.raises(DocumentError, match=r"empty\.txt is empty"):
        extract_bytes("empty.txt", b"\n\n  \n")


def test_file_deleted_after_choosing(tmp_path: Path) -> None:
    with pytest.raises(DocumentError, match=r"gone\.pdf is no longer there.*choose it again"):
        extract(tmp_path / "gone.pdf")


def test_folder_is_not_a_document(tmp_path: Path) -> None:
    with pytest.raises(DocumentError, match=r"is a folder"):
        extract(tmp_path)


def test_huge_log_is_refused_by_its_size_without_reading_it(tmp_path: Path) -> None:
    """A sparse 200 MB file: stat says its size; reading it would take 200 MB of memory."""
    path = tmp_path / "server.log"
    with path.open("wb") as f:
        f.truncate(200 * 1024 * 1024)
    with pytest.raises(DocumentError, match=r"server\.log is 210 MB; Hearth reads .* up to 67 MB"):
        extract(path)
    assert MAX_FILE_BYTES < 200 * 1024 * 1024


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("a.md", DocKind.MARKDOWN),
        ("Makefile", DocKind.CODE),
        ("cfg.yaml", DocKind.CODE),
        ("x.TSV", DocKind.CSV),
        ("page.htm", DocKind.HTML),
        ("notes", DocKind.TEXT),
        ("app.log", DocKind.TEXT),
    ],
)
def test_kind_by_name(name: str, kind: DocKind) -> None:
    assert kind_of(name) is kind


def test_unsupported_office_formats_say_what_to_do() -> None:
    with pytest.raises(DocumentError, match=r"book\.xlsx is an Excel workbook.*save it as PDF"):
        extract_bytes("book.xlsx", b"PK\x03\x04")


# -- chunking -------------------------------------------------------------------------


def test_chunks_follow_headings_and_carry_their_path() -> None:
    blocks = [
        Block("Guide", BlockKind.HEADING, line=1, level=1),
        Block("Intro text.", line=2),
        Block("Install", BlockKind.HEADING, line=4, level=2),
        Block("Run the installer.", line=5),
        Block("Linux", BlockKind.HEADING, line=7, level=3),
        Block("Use the package.", line=8),
        Block("Usage", BlockKind.HEADING, line=10, level=2),
        Block("Open it.", line=11),
    ]
    chunks = list(chunk_blocks(blocks))
    assert [(c.heading, c.text, c.line_start) for c in chunks] == [
        ("Guide", "Intro text.", 2),
        ("Guide › Install", "Run the installer.", 5),
        ("Guide › Install › Linux", "Use the package.", 8),
        ("Guide › Usage", "Open it.", 11),
    ]
    assert [c.index for c in chunks] == [0, 1, 2, 3]


def test_paragraphs_pack_up_to_the_target_with_overlap() -> None:
    paragraphs = [Block(f"Paragraph {i} " + "word " * 30, line=1 + 2 * i) for i in range(20)]
    chunks = list(chunk_blocks(paragraphs, target=120, overlap=50))
    assert len(chunks) > 3
    for before, after in itertools.pairwise(chunks):
        last_paragraph = before.text.split("\n\n")[-1]
        assert after.text.startswith(last_paragraph)  # the overlap: the paragraph before
    assert all(c.tokens <= 120 for c in chunks)
    every = "\n\n".join(c.text for c in chunks)
    assert all(f"Paragraph {i} " in every for i in range(20))


def test_code_block_kept_whole_when_it_fits() -> None:
    code = "\n".join(f"x{i} = {i}" for i in range(30))
    blocks = [Block("Intro " * 40, line=1), Block(code, BlockKind.CODE, line=3)]
    chunks = list(chunk_blocks(blocks, target=100, overlap=0))
    assert [c.text for c in chunks] == ["Intro " * 40, code]
    assert (chunks[1].line_start, chunks[1].line_end) == (3, 32)


def test_long_block_split_at_lines_with_their_numbers() -> None:
    log = "\n".join(f"2026-12-07 12:00:{i:02d} event number {i} happened" for i in range(60))
    chunks = list(chunk_blocks([Block(log, line=10)], target=80, overlap=0))
    assert len(chunks) > 3
    assert chunks[0].line_start == 10
    for before, after in itertools.pairwise(chunks):
        assert after.line_start == before.line_end + 1  # no line lost, none twice
    assert chunks[-1].line_end == 69


def test_one_huge_line_split_by_sentences_and_words() -> None:
    text = " ".join(f"Sentence {i} says something." for i in range(200)) + " " + "x" * 5000
    chunks = list(chunk_blocks([Block(text, line=1)], target=CHUNK_TOKENS, overlap=0))
    assert all(c.tokens <= CHUNK_TOKENS + 1 for c in chunks)
    assert "".join(c.text for c in chunks).count("x") == 5000
    assert all(c.line_start == 1 for c in chunks)


def test_pdf_chunks_know_their_pages() -> None:
    pages = [[f"Page {p} line {i} with some words in it." for i in range(30)] for p in range(3)]
    doc = extract_bytes("book.pdf", pdf_bytes(pages))
    chunks = chunk_document(doc, target=150, overlap=30)
    assert chunks[0].page == 1 and chunks[-1].page_end == 3
    assert {c.page for c in chunks} == {1, 2, 3}
    # a chunk never crosses a page, so a citation names one page
    assert all(c.page == c.page_end and c.location == f"page {c.page}" for c in chunks)


def test_location_labels() -> None:
    assert location_label(3, None) == "page 3"
    assert location_label(3, None, None, 4) == "pages 3–4"
    assert location_label(None, 10, 24) == "lines 10–24"
    assert location_label(None, 7, 7) == "line 7"
    assert location_label(None, None) == ""


def test_token_estimate_counts_cjk_per_character() -> None:
    assert estimate_tokens("") == 0
    assert estimate_tokens("abc def ghi") == 4
    assert estimate_tokens("日本語") == 3
