"""Document retrieval on text no one here wrote: CPython's own documentation topics
(``pydoc_data.topics``, shipped with every Python), as Markdown and as a PDF.

Questions are made from the text itself: a sentence of a chunk is picked and its
content words become the question ("share words with their passage"), paired with
the passages that hold that sentence. Two kinds:
- ``words``: up to 8 of the sentence's content words (goal: recall@5 >= 0.9, BM25);
- ``few``: 3 of them, the rarest left out (a vaguer question).
Reports recall@1/5/10 with BM25 alone, and hybrid (BM25 + vectors, RRF) when
``--embedding PATH`` names an embedding GGUF; indexing throughput of the PDF (pages/s,
extraction and indexing apart); query latency on a 1,000-page PDF (search, and the
whole documents_prompt of a turn). Goals (issue 14): query <= 50 ms, indexing >= 20 pages/s.

    .venv/bin/python bench/doc_qa.py [--questions 300] [--pages 1000] [--embedding FILE]
"""

from __future__ import annotations

import argparse
import random
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from app.doc_ingest import embed_document, ingest_bytes, vector_ranking  # noqa: E402
from engine.documents.extract import extract_bytes  # noqa: E402
from engine.history.doc_index import STOPWORDS, ChunkHit  # noqa: E402
from engine.history.doc_prompt import RRF_K, AttachedDocument, documents_prompt, rrf  # noqa: E402
from engine.history.store import ChatStore  # noqa: E402
from engine.types import Message  # noqa: E402
from tests.fixtures.documents import pdf_bytes  # noqa: E402

LINES_PER_PAGE = 50
_WORD = re.compile(r"[A-Za-z_][A-Za-z_0-9]+")
_SENTENCE = re.compile(r"(?<=[.!?])\s+")


def topics_markdown() -> str:
    import pydoc_data.topics as t

    return "\n\n".join(f"# {name}\n\n{text}" for name, text in sorted(t.topics.items()))


def as_pdf(text: str, pages: int | None = None) -> bytes:
    """The text laid out 50 lines a page; repeated ("Volume N") up to ``pages`` pages."""
    lines = [line[:100] for line in text.split("\n")]
    pdf_pages = [lines[i : i + LINES_PER_PAGE] for i in range(0, len(lines), LINES_PER_PAGE)]
    if pages:
        out: list[list[str]] = []
        volume = 1
        while len(out) < pages:
            out += [[f"Volume {volume}", *p] for p in pdf_pages]
            volume += 1
        pdf_pages = out[:pages]
    return pdf_bytes(pdf_pages)


def make_questions(
    chunks: list[ChunkHit], n: int, seed: int = 0
) -> list[tuple[str, str, set[int]]]:
    """(kind, question, ids of the chunks holding its sentence), ``n`` of each kind."""
    rng = random.Random(seed)
    frequency: dict[str, int] = {}
    for c in chunks:
        for w in set(_WORD.findall(c.chunk.text.lower())):
            frequency[w] = frequency.get(w, 0) + 1
    out: list[tuple[str, str, set[int]]] = []
    tries = 0
    while len(out) < 2 * n and tries < 50 * n:
        tries += 1
        chunk = rng.choice(chunks)
        sentences = [s for s in _SENTENCE.split(chunk.chunk.text) if len(s) > 60]
        if not sentences:
            continue
        sentence = rng.choice(sentences)
        words = [w for w in dict.fromkeys(_WORD.findall(sentence.lower())) if w not in STOPWORDS]
        if len(words) < 5:
            continue
        holders = {c.id for c in chunks if sentence in c.chunk.text}
        out.append(("words", " ".join(words[:8]), holders))
        common = sorted(words, key=lambda w: -frequency.get(w, 0))[:3]
        out.append(("few", " ".join(common), holders))
    return out


def _weighted_rrf(bm25: list[int], vectors: list[int], weight: float) -> list[int]:
    score: dict[int, float] = {}
    for w, ranking in ((1.0, bm25), (weight, vectors)):
        for rank, item in enumerate(ranking, 1):
            score[item] = score.get(item, 0.0) + w / (RRF_K + rank)
    return sorted(score, key=lambda item: -score[item])


def recall(ranked: list[list[int]], truth: list[set[int]], k: int) -> float:
    return sum(bool(set(r[:k]) & t) for r, t in zip(ranked, truth, strict=True)) / len(truth)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--questions", type=int, default=300)
    parser.add_argument("--pages", type=int, default=1000)
    parser.add_argument("--embedding", type=Path, default=None)
    parser.add_argument(
        "--minilm",
        action="store_true",
        help="build all-MiniLM-L6-v2 as a GGUF (tests/fixtures/minilm_gguf.py) and use it",
    )
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument(
        "--store",
        type=Path,
        default=None,
        help="keep the chat store here (vectors made once: a second run skips embedding)",
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        store = ChatStore(args.store or Path(tmp) / "chats.sqlite3")
        text = topics_markdown()
        print(f"corpus: pydoc_data.topics, {len(text) / 1e6:.2f} MB, {text.count(chr(10))} lines")

        # -- recall, on the Markdown (one copy: no duplicate passages) ------------
        doc = ingest_bytes(store, "topics.md", text.encode()).document
        chunks = store.chunks(doc.id)
        print(f"chunks: {len(chunks)}")
        questions = make_questions(chunks, args.questions)
        rank_vec = None
        if args.minilm:
            from tests.fixtures.minilm_gguf import minilm_gguf

            args.embedding = minilm_gguf()
        if args.embedding:
            from engine.inference.embedding import Embedder

            embedder = Embedder(args.embedding)
            t0 = time.perf_counter()
            embed_document(store, embedder, doc.id)
            print(f"embedded {len(chunks)} chunks in {time.perf_counter() - t0:.1f} s")
            rank_vec = vector_ranking(store, embedder)
        for kind in ("words", "few"):
            qs = [(q, t) for k, q, t in questions if k == kind]
            bm25 = [[h.id for h in store.search_chunks([doc.id], q, 40)] for q, _ in qs]
            truth = [t for _, t in qs]
            line = f"{kind:5} n={len(qs)}  BM25 recall@1={recall(bm25, truth, 1):.3f}"
            line += f" @5={recall(bm25, truth, 5):.3f} @10={recall(bm25, truth, 10):.3f}"
            if rank_vec is not None:
                vec = [list(rank_vec([doc.id], q)) for q, _ in qs]
                line += f"  vectors @1={recall(vec, truth, 1):.3f}"
                line += f" @5={recall(vec, truth, 5):.3f} @10={recall(vec, truth, 10):.3f}"
                hybrid = [rrf([b, v]) for b, v in zip(bm25, vec, strict=True)]
                # The same rankings fused with the vectors' votes at half weight, and
                # BM25's ranking with the vectors' finds only after it (fill-in).
                half = [_weighted_rrf(b, v, 0.5) for b, v in zip(bm25, vec, strict=True)]
                fill = [b + [c for c in v if c not in b] for b, v in zip(bm25, vec, strict=True)]
                line += f"  hybrid @1={recall(hybrid, truth, 1):.3f}"
                line += f" @5={recall(hybrid, truth, 5):.3f} @10={recall(hybrid, truth, 10):.3f}"
                line += f"  hybrid(vectors x0.5) @1={recall(half, truth, 1):.3f}"
                line += f" @5={recall(half, truth, 5):.3f} @10={recall(half, truth, 10):.3f}"
                line += f"  fill-in @5={recall(fill, truth, 5):.3f}"
                for top in (3, 5, 10):  # only the vectors' best few vote
                    cut = [rrf([b, v[:top]]) for b, v in zip(bm25, vec, strict=True)]
                    line += f"  vec-top{top} @1={recall(cut, truth, 1):.3f}"
                    line += f" @5={recall(cut, truth, 5):.3f} @10={recall(cut, truth, 10):.3f}"
            print(line)
        if rank_vec is None:
            print("hybrid: not measured (no --embedding GGUF given)")

        # -- indexing throughput: the PDF --------------------------------------------
        pdf = as_pdf(text, args.pages)
        t0 = time.perf_counter()
        extracted = extract_bytes("topics.pdf", pdf)
        t_extract = time.perf_counter() - t0
        assert extracted.pages == args.pages
        t0 = time.perf_counter()
        big_ingested = ingest_bytes(store, "topics.pdf", pdf)
        big = big_ingested.document
        t_all = time.perf_counter() - t0
        pages = extracted.pages
        print(
            f"PDF: {pages} pages, {len(pdf) / 1e6:.1f} MB, {big.chunk_count} chunks; "
            f"extract {t_extract:.1f} s ({pages / t_extract:.0f} pages/s), "
            f"extract+chunk+index {t_all:.1f} s ({pages / t_all:.0f} pages/s, "
            f"{len(pdf) / 1e6 / t_all:.2f} MB/s)"
        )

        # -- query latency on the 1,000-page PDF ---------------------------------------
        qs = [q for k, q, _ in questions if k == "words"][: args.runs]
        search_ms, turn_ms = [], []
        conv = store.create_conversation("bench")
        msg = store.add_message(conv.id, "user", "x")
        attached = AttachedDocument(big_ingested.part, msg.id, big)
        for q in qs:
            t0 = time.perf_counter()
            store.search_chunks([big.id], q, 40)
            search_ms.append((time.perf_counter() - t0) * 1000)
            t0 = time.perf_counter()
            documents_prompt(store, [Message("user", q)], [attached], n_ctx=8192)
            turn_ms.append((time.perf_counter() - t0) * 1000)

        def stats(ms: list[float]) -> str:
            p95 = sorted(ms)[int(0.95 * (len(ms) - 1))]
            return f"median {statistics.median(ms):.1f} ms, p95 {p95:.1f} ms"

        print(f"query on {pages} pages: search {stats(search_ms)}; turn {stats(turn_ms)}")
        store.close()


if __name__ == "__main__":
    main()
