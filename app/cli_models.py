"""The model manager on the command line: ``hearth models``, ``pull``, ``import`` and
``rm`` (engine.models.library, engine.models.download), with the same folders as the window.

``hearth pull``'s exit codes are here, one per thing a script may want to act on.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, TextIO, cast

from app.paths import AppPaths
from engine.errors import KnownError
from engine.models.types import DownloadProgress, DownloadState
from engine.types import EngineOptions

if TYPE_CHECKING:
    from engine.models.catalog import CatalogEntry

# `hearth pull`'s exit codes, one per thing a script may want to act on.
EXIT_FAILED = 1  # anything else, with its sentence
EXIT_USAGE = 2  # no such model in the catalog
EXIT_ACCESS = 3  # 401/403: gated or private, a Hugging Face token is needed
EXIT_NOT_FOUND = 4  # 404: not where the catalog says
EXIT_OFFLINE = 5  # Hugging Face could not be reached
EXIT_DISK_FULL = 6
EXIT_DAMAGED = 7  # arrived with the wrong sha256, and was deleted
EXIT_INTERRUPTED = 130  # Ctrl+C: the part downloaded so far is kept

_PULL_EPILOG = f"""\
Resumable: after Ctrl+C, a dropped connection or a crash, the same command continues
where it stopped. The file counts as installed only once its sha256 matches. A copy
already in the Hugging Face cache (HF_HUB_CACHE) is used instead of downloading.
The server is HF_ENDPOINT (default https://huggingface.co); the token is the one
saved in Settings (kept in the system keyring), else the HF_TOKEN environment variable.

exit codes: 0 installed, {EXIT_FAILED} failed, {EXIT_USAGE} no such model,
{EXIT_ACCESS} access refused (401/403: add your token), {EXIT_NOT_FOUND} not found (404),
{EXIT_OFFLINE} offline, {EXIT_DISK_FULL} disk full, {EXIT_DAMAGED} damaged in transit (deleted),
{EXIT_INTERRUPTED} interrupted (the part is kept)"""


def _size_arg(text: str) -> int:
    """``8GB``, ``8G``, ``8GiB`` (all 8 x 2^30: memory is sold in binary units), ``512MB``."""
    raw = text.strip().upper().removesuffix("IB").removesuffix("B")
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    try:
        if raw and raw[-1] in units:
            return int(float(raw[:-1]) * units[raw[-1]])
        return int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size like 8GB or 16GiB") from None


def add_model_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    catalog_help = "use this catalog file instead of Hearth's own (a mirror's, or a refreshed one)"
    models = sub.add_parser(
        "models",
        help="list the catalog and the installed models, and what fits this computer",
        description="The catalog and the installed models: size, estimated memory at the "
        "default context, whether it fits this computer, and the recommended one (*).",
    )
    models.add_argument("--json", action="store_true", help="print JSON instead of a table")
    models.add_argument("--catalog", type=Path, help=catalog_help)
    models.add_argument(
        "--assume-ram",
        type=_size_arg,
        metavar="SIZE",
        help="estimate for a computer with this much memory (e.g. 8GB), all of it free, "
        "instead of this one: to see what another computer should get",
    )
    models.add_argument(
        "--context", type=int, help="context length the estimates are for (default: 8192)"
    )
    models.add_argument(
        "--measure-again",
        action="store_true",
        help="measure this computer's memory speed again (it is measured once and kept)",
    )

    pull = sub.add_parser(
        "pull",
        help="download a model from the catalog (resumable, verified)",
        epilog=_PULL_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    pull.add_argument("id", help="the model's id, as `hearth models` lists it")
    pull.add_argument("--catalog", type=Path, help=catalog_help)
    pull.add_argument(
        "--no-hf-cache", action="store_true", help="download even if the HF cache has a copy"
    )
    pull.add_argument(
        "--no-vision",
        action="store_true",
        help="leave out the model's vision file (it then cannot see images)",
    )

    imp = sub.add_parser("import", help="copy a .gguf file into the models folder (checked first)")
    imp.add_argument("path", type=Path, help="the .gguf file")

    rm = sub.add_parser("rm", help="delete a model from the models folder")
    rm.add_argument("model", help="a catalog id, or the file's name or path in the models folder")
    rm.add_argument("--catalog", type=Path, help=catalog_help)


def quiet_library_logs() -> None:
    """huggingface_hub prints its warnings to stderr itself; send them to Hearth's log instead."""

    from huggingface_hub.utils import logging as hub_logging

    library = hub_logging.get_logger("huggingface_hub")  # configures its handler, once
    for handler in list(library.handlers):
        library.removeHandler(handler)
    library.propagate = True


def _gb(n: float) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e9 else f"{n / 1e6:.0f} MB"


def _fail(exc: KnownError, code: int = EXIT_FAILED) -> int:
    print(f"hearth: {exc.message}", file=sys.stderr)
    return code


def run_models(args: argparse.Namespace, paths: AppPaths) -> int:
    from engine.models.catalog import load_catalog, verified_revision
    from engine.models.hardware import probe
    from engine.models.library import model_rows
    from engine.models.service import ModelService

    try:
        catalog = load_catalog(args.catalog)
    except KnownError as exc:
        return _fail(exc)
    options = EngineOptions() if args.context is None else EngineOptions(n_ctx=args.context)
    hw = probe(paths.models_dir)
    service = ModelService(catalog, paths.models_dir)
    if args.assume_ram is not None:
        # Another computer: its RAM as told, and neither a GPU nor a speed known for it.
        hw = replace(hw, total_ram=args.assume_ram, available_ram=args.assume_ram)
    else:
        from engine.inference.devices import probe_devices

        service.measure_machine(paths.data_dir, probe_devices, remeasure=args.measure_again)
    device = service.device() if args.assume_ram is None else None
    bandwidth = service.bandwidth if args.assume_ram is None else None
    rows = model_rows(
        catalog,
        paths.models_dir,
        hw,
        options,
        device=device,
        ram_bandwidth=bandwidth.bytes_per_s if bandwidth is not None else None,
    )
    others = service.own_files()  # not the catalog's, and not an embedding model
    listed = [
        {
            "id": r.entry.id,
            "name": r.entry.name,
            "family": r.entry.family,
            "quantization": r.entry.quantization,
            "size": r.entry.size,
            "size_estimated": r.entry.size_estimated,
            "memory": r.memory,
            "context": r.fit.fit.estimate.n_ctx,
            "badge": r.badge.value,
            "warning": r.fit.fit.warning,
            # With a GPU: where the layers go (None without one).
            "gpu_memory": r.gpu_memory,
            "ram_memory": r.ram_memory,
            "gpu_layers": r.fit.plan.gpu_layers if r.fit.plan else None,
            "offload_badge": r.fit.plan.badge.value if r.fit.plan else None,
            # Estimated decode speed (None: not measured, as with --assume-ram).
            "tokens_per_s": r.tokens_per_s,
            "recommended": r.recommended,
            "reason": r.fit.reason or None,
            "installed": r.installed is not None,
            "path": str(r.installed) if r.installed else None,
            # The repository commit the file was verified against when downloaded.
            "revision": verified_revision(r.installed) if r.installed else None,
            "hf_cache_path": str(r.cached.path) if r.cached else None,
            "partial_bytes": r.partial,
            "downloadable": r.entry.repo is not None,
        }
        for r in rows
    ]
    other = [
        {
            "name": m.name,
            "quantization": m.quantization,
            "size": m.size,
            "path": str(m.path),
            "verified": m.verified,
        }
        for m in others
    ]
    machine = {
        "total_ram": hw.total_ram,
        "available_ram": hw.available_ram,
        "assumed": args.assume_ram is not None,
        "physical_cores": hw.physical_cores,
        "gpu_offload": service.devices.can_offload if service.devices else hw.gpu_offload,
        "gpu": {
            "name": device.name,
            "backend": device.backend.value,
            "total_memory": device.total_memory,
            "free_memory": device.free_memory,
            "unified": device.unified,
        }
        if device is not None
        else None,
        "ram_bandwidth": bandwidth.bytes_per_s if bandwidth is not None else None,
        "disk_free": hw.disk_free,
        "models_dir": str(paths.models_dir),
    }
    if args.json:
        print(json.dumps({"machine": machine, "models": listed, "other_models": other}, indent=1))
        return 0
    _print_models_table(machine, listed, other)
    return 0


def _print_models_table(
    machine: Mapping[str, object],
    listed: Sequence[Mapping[str, object]],
    other: Sequence[Mapping[str, object]],
) -> None:
    total, free = cast(int, machine["total_ram"]), cast(int, machine["available_ram"])
    gib = 1 << 30
    if machine["assumed"]:
        print(f"Assuming a computer with {total / gib:.1f} GiB of memory, all of it free.")
    else:
        print(f"This computer: {total / gib:.1f} GiB of memory, {free / gib:.1f} GiB free.")
    context = cast(int, listed[0]["context"]) if listed else EngineOptions().n_ctx
    print(f"Memory is estimated for a context of up to {context:,} tokens. * = recommended.\n")
    gpu = any(m["gpu_memory"] is not None for m in listed)
    rows = [("", "ID", "SIZE", "GPU + RAM" if gpu else "MEMORY", "FIT", "SPEED", "STATE")]
    for m in listed:
        state = "installed" if m["installed"] else ""
        if not state and m["hf_cache_path"]:
            state = "in HF cache"
        elif not state and m["partial_bytes"]:
            state = f"{_gb(cast(int, m['partial_bytes']))} downloaded"
        rows.append(
            (
                "*" if m["recommended"] else "",
                str(m["id"]),
                ("~" if m["size_estimated"] else "") + _gb(cast(int, m["size"])),
                _memory(m),
                str(m["offload_badge"] or m["badge"]).replace("_", " "),
                _speed(m["tokens_per_s"]),
                state,
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.rjust(w) if i in (2, 3) else c.ljust(w) for i, (c, w) in
                        enumerate(zip(r, widths, strict=True))).rstrip())  # fmt: skip
    reason = next((m["reason"] for m in listed if m["recommended"] and m["reason"]), None)
    if reason:
        print(f"\n* {reason}")
    if other:
        print(f"\nOther models in {machine['models_dir']}:")
        for o in other:
            mark = "" if o["verified"] else "  (not checked)"
            print(f"  {Path(str(o['path'])).name}  {o['quantization']}  "
                  f"{_gb(cast(int, o['size']))}{mark}")  # fmt: skip


def _speed(tokens_per_s: object) -> str:
    """As the Model page and the reason round it (engine.models.speed)."""
    if not isinstance(tokens_per_s, float):
        return ""
    return f"{tokens_per_s:.0f} tok/s" if tokens_per_s >= 2 else f"{tokens_per_s:.1f} tok/s"


def _memory(m: Mapping[str, object]) -> str:
    if m["gpu_memory"] is None:
        return _gb(cast(int, m["memory"]))
    return f"{_gb(cast(int, m['gpu_memory']))} + {_gb(cast(int, m['ram_memory']))}"


class _ProgressBar:
    """One download's progress on stderr: a redrawn bar on a terminal, lines otherwise."""

    def __init__(self, stream: TextIO, filename: str) -> None:
        self._stream = stream
        self._tty = stream.isatty()
        self._name = filename
        self._state: DownloadState | None = None
        self._tenth = -1

    def __call__(self, p: DownloadProgress) -> None:
        changed = p.state is not self._state
        self._state = p.state
        if p.state is DownloadState.DOWNLOADING:
            tenth = p.done * 10 // p.total if p.total else 0
            if self._tty:
                self._stream.write("\r" + self._bar(p) + "\x1b[K")
                self._stream.flush()
            elif tenth != self._tenth or changed:
                self._line(self._bar(p))
            self._tenth = tenth
            return
        if not changed:
            return
        message = {
            DownloadState.CONNECTING: f"connecting to {self._where()} for {self._name}",
            DownloadState.CHECKING: f"resuming {self._name} at {_gb(p.done)}: checking the "
            "part downloaded earlier",
            DownloadState.RETRYING: f"retrying (attempt {p.attempt + 1}): {p.note}",
            DownloadState.VERIFYING: "verifying the sha256",
            DownloadState.DONE: "",
        }[p.state]
        if message:
            self._line(message)

    def _where(self) -> str:
        return os.environ.get("HF_ENDPOINT") or "Hugging Face"

    def _line(self, text: str) -> None:
        if self._tty:
            text = "\r\x1b[K" + text
        self._stream.write(text + "\n")
        self._stream.flush()

    def _bar(self, p: DownloadProgress) -> str:
        total = p.total or 0
        frac = min(p.done / total, 1.0) if total else 0.0
        filled = int(frac * 24)
        eta = "--:--" if p.eta_s is None else _clock(p.eta_s)
        return (
            f"{frac:4.0%} [{'#' * filled}{' ' * (24 - filled)}] {_gb(p.done)} / {_gb(total)}  "
            f"{p.speed / 1e6:6.1f} MB/s  ETA {eta}"
        )


def _clock(seconds: float) -> str:
    s = int(seconds + 0.5)
    return (
        f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"
    )


def _pull_exit_code(exc: KnownError) -> int:
    from engine.models.download_errors import (
        AccessDeniedError,
        ChecksumMismatchError,
        DiskFullError,
        NotOnHubError,
        OfflineError,
    )

    kinds: list[tuple[type[KnownError], int]] = [
        (AccessDeniedError, EXIT_ACCESS),
        (NotOnHubError, EXIT_NOT_FOUND),
        (OfflineError, EXIT_OFFLINE),
        (DiskFullError, EXIT_DISK_FULL),
        (ChecksumMismatchError, EXIT_DAMAGED),
    ]
    return next((code for kind, code in kinds if isinstance(exc, kind)), EXIT_FAILED)


def run_pull(args: argparse.Namespace, paths: AppPaths) -> int:
    """``hearth pull ID``: the model, then its vision file (issue 13) if it has one.
    Prints the model's path on stdout (scripts read it), the rest on stderr."""
    code = _pull_model(args, paths)
    if code != 0 or args.no_vision:
        return code
    from engine.models.catalog import installed_path, load_catalog

    entry = next((e for e in load_catalog(args.catalog) if e.id == args.id), None)
    projector = entry.projector if entry is not None else None
    if projector is None:
        return 0
    models_dir = paths.ensure().models_dir
    if installed_path(projector, models_dir) is not None:
        return 0
    print(f"and its vision file, {projector.filename}, so it can see images:", file=sys.stderr)
    from engine.models.hf_cache import find_in_hf_cache
    from engine.models.library import adopt_from_cache

    cached = None if args.no_hf_cache else find_in_hf_cache(projector)
    if cached is not None:
        try:
            adopt_from_cache(projector, models_dir, cached=cached)
            return 0
        except KnownError as exc:  # damaged there: download it instead
            print(f"hearth: {exc.message}", file=sys.stderr)
    return _download(projector, models_dir, print_path=False)


def _pull_model(args: argparse.Namespace, paths: AppPaths) -> int:
    from engine.errors import CatalogError
    from engine.models.catalog import installed_path, load_catalog
    from engine.models.hf_cache import find_in_hf_cache
    from engine.models.library import adopt_from_cache

    try:
        catalog = load_catalog(args.catalog)
    except KnownError as exc:
        return _fail(exc)
    entry = next((e for e in catalog if e.id == args.id), None)
    if entry is None:
        return _fail(
            CatalogError(f"Hearth's catalog has no model {args.id!r}: `hearth models` lists them."),
            EXIT_USAGE,
        )
    models_dir = paths.ensure().models_dir
    done = installed_path(entry, models_dir)
    if done is not None:
        print(f"{entry.id} is already installed at {done}.", file=sys.stderr)
        print(done)
        return 0
    if entry.repo is None:
        return _fail(KnownError(f"{entry.name} is installed with Hearth, not downloaded."))
    cached = None if args.no_hf_cache else find_in_hf_cache(entry)
    if cached is not None:
        print(f"using the copy in the Hugging Face cache: {cached.path}", file=sys.stderr)
        try:
            path = adopt_from_cache(entry, models_dir, cached=cached)
            print(path)
            return 0
        except KnownError as exc:  # damaged there: download it instead
            print(f"hearth: {exc.message}", file=sys.stderr)
    return _download(entry, models_dir)


def _download(entry: CatalogEntry, models_dir: Path, *, print_path: bool = True) -> int:
    from engine.models.download import Download, DownloadCancelled
    from engine.models.hf_token import ENV_VAR, TokenStore

    environment_token = os.environ.get(ENV_VAR, "").strip() or None
    try:
        token = TokenStore().get()  # the saved one, else HF_TOKEN's
    except Exception as exc:  # a keyring that misbehaves must not stop a public download
        print(f"hearth: could not read the saved token ({type(exc).__name__}).", file=sys.stderr)
        token = environment_token
    download = Download(
        entry,
        models_dir,
        endpoint=os.environ.get("HF_ENDPOINT") or None,
        token=token,
        on_progress=_ProgressBar(sys.stderr, entry.filename),
    )
    outcome: list[Path | BaseException] = []
    finished = threading.Event()

    def work() -> None:
        try:
            outcome.append(download.run())
        except BaseException as exc:  # handed to the main thread
            outcome.append(exc)
        finally:
            finished.set()

    # The download runs on a thread so that Ctrl+C (and SIGTERM) reach the main thread
    # here, which cancels cleanly: the part is flushed and kept, the lock released.
    # (An Event, not Thread.join: a join interrupted by Ctrl+C can leave is_alive() wrong
    # on Python 3.11, python/cpython#90882.)
    thread = threading.Thread(target=work, name="hearth-pull", daemon=True)
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    interrupted = False
    try:
        thread.start()
        while not finished.is_set():
            try:
                finished.wait(0.2)
            except KeyboardInterrupt:
                interrupted = True
                download.cancel()
    finally:
        signal.signal(signal.SIGTERM, previous)
    result = outcome[0]
    if isinstance(result, Path):
        print(f"installed {entry.id} at {result}", file=sys.stderr)
        if print_path:
            print(result)
        return 0
    if isinstance(result, DownloadCancelled) or interrupted:
        print(
            f"\nhearth: stopped. The part downloaded so far is kept: run `hearth pull {entry.id}` "
            "again to resume.",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    if isinstance(result, KnownError):
        code = _pull_exit_code(result)
        if code == EXIT_ACCESS:
            from_environment = token is not None and token == environment_token
            return _fail(_with_token_hint(result, entry.id, token, from_environment), code)
        return _fail(result, code)
    raise result


def _with_token_hint(
    exc: KnownError, model_id: str, token: str | None, from_environment: bool
) -> KnownError:
    """``exc`` with what to do about the token on the command line (never the token)."""
    if token is None:
        hint = f"On the command line, set HF_TOKEN instead: HF_TOKEN=hf_… hearth pull {model_id}"
    elif from_environment:
        hint = "The token came from HF_TOKEN: check that it is right and has access"
    else:
        hint = "The token saved in Settings was used (HF_TOKEN is read only when none is saved)"
    return KnownError(f"{exc.message} {hint}.", detail=exc.detail)


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run_import(args: argparse.Namespace, paths: AppPaths) -> int:
    from engine.models.catalog import load_catalog
    from engine.models.library import import_gguf

    try:
        model = import_gguf(args.path, paths.ensure().models_dir, catalog=load_catalog())
    except KnownError as exc:
        return _fail(exc)
    quant = f", {model.quantization}" if model.quantization else ""
    print(f"imported {model.name} ({_gb(model.size)}{quant})", file=sys.stderr)
    if model.note:
        print(model.note, file=sys.stderr)
    print(model.path)
    return 0


def run_rm(args: argparse.Namespace, paths: AppPaths) -> int:
    from engine.models.catalog import load_catalog
    from engine.models.library import delete_model, partial_download_bytes

    models_dir = paths.models_dir
    try:
        entry = next((e for e in load_catalog(args.catalog) if e.id == args.model), None)
        if entry is not None:
            target = models_dir / entry.filename
        elif (models_dir / args.model).exists():
            target = models_dir / args.model
        else:
            target = Path(args.model)
        partial = partial_download_bytes(models_dir, target.name)
        if not target.exists() and not partial:
            print(f"hearth: there is no model {args.model!r} in {models_dir}.", file=sys.stderr)
            return EXIT_FAILED
        delete_model(target, models_dir)
    except KnownError as exc:
        return _fail(exc)
    print(f"deleted {target.name}", file=sys.stderr)
    return 0
