"""Maintainer script: refresh resources/catalog.json from the Hugging Face Hub.

    python -m maint.catalog_refresh                 # pin main's commit, fill sizes and hashes
    python -m maint.catalog_refresh --arch          # ...and architecture from the GGUF headers
    python -m maint.catalog_refresh --dry-run --endpoint http://127.0.0.1:8080

For each repo in the catalog it resolves the revision (the pinned one, or
``main`` with ``--update-revisions``/when none is pinned) to a commit with
``HfApi.model_info``, then asks ``HfApi.get_paths_info`` for every file: the
LFS metadata gives the exact size and sha256. Entries get ``revision``,
``size`` (``size_source: "hub"``), ``sha256`` and ``verified: true``. With
``--arch`` it reads each family's first file's GGUF header over a Range
request (no full download) and writes the architecture parameters the
estimator uses. Which fields come from where: resources/CATALOG.md.

Run it by hand, review the diff, commit. Hearth itself never runs it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from huggingface_hub import HfApi, get_session, hf_hub_url, hf_raise_for_status
from huggingface_hub.errors import HfHubHTTPError

# Documented as public, but not re-exported in a way mypy sees.
from huggingface_hub.utils import build_hf_headers  # type: ignore[attr-defined]

from engine.gguf.header import GGUFError, arch_from_header, read_gguf_header
from engine.models.catalog import resources_dir

log = logging.getLogger("catalog_refresh")

_HEADER_START = 16 << 20  # Qwen3.5's 248k-token tokenizer makes a header of ~10 MB
_HEADER_MAX = 128 << 20


def _files_by_repo(catalog: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    families = catalog.get("families", {})
    out: dict[str, list[dict[str, Any]]] = {}
    for entry in catalog.get("models", []):
        repo = entry.get("repo") or families.get(entry.get("family"), {}).get("repo")
        if repo:
            out.setdefault(repo, []).append(entry)
    return out


def refresh_files(
    catalog: dict[str, Any], api: HfApi, *, update_revisions: bool = False
) -> list[str]:
    """Update entries in place from the Hub; returns problems found (one line each)."""
    problems: list[str] = []
    for repo, entries in _files_by_repo(catalog).items():
        pinned = sorted(str(e["revision"]) for e in entries if e.get("revision"))
        wanted = "main" if update_revisions or not pinned else pinned[0]
        try:
            commit = api.model_info(repo, revision=wanted).sha
            if commit is None:
                problems.append(f"{repo}: the Hub gave no commit for {wanted}")
                continue
            paths = [e["filename"] for e in entries]
            infos = {info.path: info for info in api.get_paths_info(repo, paths, revision=commit)}
        except HfHubHTTPError as exc:
            problems.append(f"{repo}: {type(exc).__name__}: {str(exc).splitlines()[0]}")
            continue
        for entry in entries:
            info = infos.get(entry["filename"])
            if info is None or not hasattr(info, "size"):
                problems.append(f"{repo}: {entry['filename']} does not exist at {commit}")
                continue
            lfs = getattr(info, "lfs", None)
            if lfs is None:
                problems.append(f"{repo}: {entry['filename']} is not an LFS file (no sha256)")
                continue
            changed = entry.get("sha256") not in (None, lfs.sha256)
            entry.update(
                revision=commit, size=lfs.size, size_source="hub", sha256=lfs.sha256, verified=True
            )
            log.info("%s %s: %d bytes, sha256 %s%s", repo, entry["filename"], lfs.size,
                     lfs.sha256, " (CHANGED)" if changed else "")  # fmt: skip
    return problems


def _header_bytes(url: str, token: str | None, size: int) -> bytes:
    headers = build_hf_headers(token=token or False)
    headers["Range"] = f"bytes=0-{size - 1}"
    response = get_session().get(url, headers=headers, follow_redirects=True, timeout=60)
    hf_raise_for_status(response)
    return response.content


def _read_remote_header(repo: str, entry: dict[str, Any], endpoint: str, token: str | None) -> Any:
    url = hf_hub_url(repo, entry["filename"], revision=entry.get("revision") or "main",
                     endpoint=endpoint)  # fmt: skip
    size = _HEADER_START
    while True:
        data = _header_bytes(url, token, size)
        with tempfile.NamedTemporaryFile(suffix=".gguf") as tmp:
            tmp.write(data)
            tmp.flush()
            try:
                return read_gguf_header(Path(tmp.name))
            except GGUFError:
                if size >= _HEADER_MAX or len(data) < size:
                    raise
                size *= 2


def refresh_architectures(catalog: dict[str, Any], *, endpoint: str, token: str | None) -> None:
    """Rewrite each family's architecture block from its first file's GGUF header."""
    for family_id, family in catalog.get("families", {}).items():
        entries = [
            e for e in catalog.get("models", [])
            if e.get("family") == family_id and e.get("size_source") == "hub"
        ]  # fmt: skip
        if not entries or not family.get("repo"):
            continue  # no file of this family is known to exist
        found = None
        for entry in entries:  # the first file whose header reads
            try:
                found = (entry, _read_remote_header(family["repo"], entry, endpoint, token))
                break
            except GGUFError as exc:
                log.warning(
                    "%s: %s has no readable GGUF header: %s", family_id, entry["filename"], exc
                )
        if found is None:
            continue
        first, header = found
        arch = arch_from_header(header)
        old = family.get("architecture", {})
        family["architecture"] = {
            "architecture": arch.architecture, "n_layer": arch.n_layer, "n_embd": arch.n_embd,
            "n_ff": arch.n_ff, "n_head": arch.n_head, "n_head_kv": arch.n_head_kv,
            "head_dim": arch.head_dim_k, "attention_layers": arch.attention_layers,
            "recurrent_layers": arch.recurrent_layers,
            "ssm": {k: header.fields.get(f"{arch.architecture}.ssm.{k}", 0)
                    for k in ("conv_kernel", "inner_size", "state_size", "group_count")},
            "n_vocab": arch.n_vocab, "n_merges": arch.n_merges, "n_ctx_train": arch.n_ctx_train,
            "n_tensors": arch.n_tensors,
            "source": f"GGUF header of {family['repo']}/{first['filename']}",
            "estimated_fields": [],
        }  # fmt: skip
        if old.get("source") != family["architecture"]["source"]:
            log.info("%s: architecture now from the GGUF header", family_id)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--catalog", type=Path, default=resources_dir() / "catalog.json")
    parser.add_argument("--endpoint", default=os.environ.get("HF_ENDPOINT"))
    parser.add_argument("--update-revisions", action="store_true", help="move pins to main")
    parser.add_argument("--arch", action="store_true", help="read architecture from GGUF headers")
    parser.add_argument("--dry-run", action="store_true", help="print, do not write")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    token = os.environ.get("HF_TOKEN")  # maintainers only; Hearth's own token is in the keyring
    api = HfApi(endpoint=args.endpoint, token=token or False)
    catalog = json.loads(args.catalog.read_text(encoding="utf-8"))
    problems = refresh_files(catalog, api, update_revisions=args.update_revisions)
    if args.arch:
        refresh_architectures(catalog, endpoint=api.endpoint, token=token)
    text = json.dumps(catalog, indent=2, ensure_ascii=False) + "\n"
    if args.dry_run:
        sys.stdout.write(text)
    else:
        tmp = args.catalog.with_name(args.catalog.name + ".part")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, args.catalog)
    for problem in problems:
        log.error("%s", problem)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
