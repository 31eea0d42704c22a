"""Opening a chat backend for a model file: the window's engine thread and
``hearth chat`` open models the same way (no Qt here).

Where the layers go is decided here, on the thread that loads, right before the
load: "GPU layers: Automatic" (``EngineOptions.n_gpu_layers`` None) becomes what
fits the GPU llama.cpp finds now (``engine.models.choice.plan_load``), with the
context the front end already fitted to the RAM. A load that runs out of device
memory anyway (other programs, driver overhead) is tried again with fewer layers
(``retry_ladder``), then on the CPU, and the model says so (``extra["device_note"]``).
A CPU-only build loads exactly as before: nothing is planned and nothing retried.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from engine.errors import ModelLoadError
from engine.inference.backend import ChatBackend
from engine.types import DeviceProbe, EngineOptions

if TYPE_CHECKING:
    from engine.gguf.arch import ModelArch
    from engine.inference.endpoint import Timeouts
    from engine.inference.local import LocalBackend

__all__ = ["KeyFor", "LoadRequest", "OpenBackend", "RemoteTarget", "open_local", "with_remote"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class RemoteTarget:
    """A model on a named connection (Settings → Connections). No API key here: it is
    read from the keyring on the thread that opens the backend, so a request (and its
    repr in a log) never carries one."""

    connection: str  # the connection's name, as the person called it
    base_url: str  # http(s)://host:port/v1
    model: str  # the server's model id

    @property
    def path(self) -> str:
        """What a reply records as its model (``RemoteBackend.info.path``)."""
        return f"{self.base_url}/models/{self.model}"


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadRequest:
    """Which model to load, and how."""

    path: str  # "" = the starter model (installed into models_dir first)
    options: EngineOptions
    # The models folder as it is when the request is made (it can be moved).
    models_dir: Path
    # A model on a server instead of a file: ``path`` and ``options`` are then unused.
    remote: RemoteTarget | None = None


OpenBackend = Callable[[LoadRequest], ChatBackend]
# A connection's API key by its name (None: it has none); may wait on the keyring.
KeyFor = Callable[[str], "str | None"]


def _no_key(_name: str) -> str | None:
    return None


def with_remote(
    local: OpenBackend,
    key_for: KeyFor = _no_key,
    timeouts_for: Callable[[], Timeouts | None] = lambda: None,
) -> OpenBackend:
    """An ``OpenBackend`` that opens a request's remote target through the server
    (``RemoteBackend.connect``: it asks for the server's models first, so a server
    that cannot be reached, refuses the key or lacks the model fails the load with
    its sentence) and anything else with ``local``. ``timeouts_for``: how long to wait
    for the server (None: ``Timeouts()``' defaults, which a person would accept)."""

    def open_backend(request: LoadRequest) -> ChatBackend:
        target = request.remote
        if target is None:
            return local(request)
        from engine.inference.remote import RemoteBackend

        try:
            return RemoteBackend.connect(
                target.base_url,
                target.model,
                api_key=key_for(target.connection),
                timeouts=timeouts_for(),
            )
        except ValueError as exc:  # an address that is not one (a hand-edited file)
            raise ModelLoadError(f"{target.connection}: {exc}") from exc

    return open_backend


# Loads one file with one set of options (the real one: LocalBackend).
Load = Callable[..., "LocalBackend"]


def open_local(
    request: LoadRequest,
    *,
    probe: Callable[[], DeviceProbe] | None = None,
    load: Load | None = None,
) -> ChatBackend:
    """The model file of ``request`` in llama.cpp, on the GPU where one fits, with
    what the catalog knows of it (its name for people and its makers' sampling
    presets). Installs the starter model first when ``request.path`` is empty.
    ``KnownError`` with a sentence when it cannot be loaded.

    ``probe`` and ``load`` are for tests (a recorded GPU); by default
    ``engine.inference.devices.probe_devices`` and ``LocalBackend``.
    """
    # Imported here: llama.cpp loads only when a model does, not with the window.
    from engine.inference.devices import probe_devices
    from engine.inference.local import LocalBackend
    from engine.inference.vision import ProjectorError
    from engine.models.catalog import catalog_entry_for, install_starter_model

    path = Path(request.path) if request.path else install_starter_model(request.models_dir)
    entry = catalog_entry_for(path)
    options, note, device_name = request.options, "", ""
    arch = _arch(path, entry.arch if entry is not None else None)
    if options.n_gpu_layers != 0:
        options, note, device_name = _plan(options, arch, (probe or probe_devices)())
    kwargs: dict[str, object] = {}
    if entry is not None:  # GGUF names are often build tags; the catalog's is for people.
        kwargs = {"name": entry.name, "sampling_presets": entry.sampling_presets()}
    projector = projector_for(path, arch, options)
    if projector is not None:
        kwargs["projector"] = projector
    total = arch.n_layer + 1 if arch is not None else 0
    try:
        return _load_stepping_down(
            load or LocalBackend, path, options, kwargs, note, total=total, device_name=device_name
        )
    except ModelLoadError as exc:
        if "projector" not in kwargs or not isinstance(exc, ProjectorError):
            raise
        # The model loads without its vision file: better a model that says it cannot
        # see (and why) than no model.
        log.warning("loading %s without its vision file: %s", path.name, exc.detail)
        del kwargs["projector"]
        note = f"{note} {exc.message}".strip()
        return _load_stepping_down(
            load or LocalBackend, path, options, kwargs, note, total=total, device_name=device_name
        )


def projector_for(path: Path, arch: ModelArch | None, options: EngineOptions) -> Path | None:
    """The model's vision file beside it (``engine.gguf.projector``), unless the person
    switched vision off for it; one made for another model is never used."""
    from engine.gguf.projector import find_projector

    if path.name in options.no_vision or arch is None:
        return None
    found, _ = find_projector(path, arch.n_embd)
    return found.path if found is not None else None


def _arch(path: Path, known: ModelArch | None) -> ModelArch | None:
    if known is not None:
        return known
    from engine.gguf.header import GGUFError, read_gguf_arch

    try:
        return read_gguf_arch(path)
    except (GGUFError, OSError, ValueError, KeyError):
        return None  # the load says what is wrong with the file


def _plan(
    options: EngineOptions, arch: ModelArch | None, probe: DeviceProbe
) -> tuple[EngineOptions, str, str]:
    """The options with their layers planned for ``probe``'s GPU; a sentence; its name."""
    from engine.models.choice import plan_load
    from engine.models.hardware import probe as probe_ram
    from engine.models.offload import DeviceInfo

    # The model loaded before is closed already (the engine thread closes it first),
    # so the free RAM and device memory are what this load can have.
    device = DeviceInfo.from_probe(probe, probe_ram(check_gpu=False))
    planned = plan_load(options, arch=arch, device=device, can_offload=probe.can_offload)
    if planned.plan is not None:
        log.info("offload plan: %s", planned.plan.sentence)
    note = planned.note
    if probe.note and options.n_gpu_layers != 0 and not device.has_gpu:
        note = f"{note} {probe.note}".strip() if note else probe.note
    return planned.options, note, device.name


def _load_stepping_down(
    load: Load,
    path: Path,
    options: EngineOptions,
    kwargs: Mapping[str, object],
    note: str,
    *,
    total: int,
    device_name: str,
) -> ChatBackend:
    """``load`` with ``options``; where the GPU runs out of memory, with fewer layers
    (``retry_ladder``), then the CPU."""
    from engine.models.offload_retry import fallback_sentence, is_out_of_device_memory, retry_ladder

    asked = options.n_gpu_layers or 0
    try:
        return load(path, options, extra=_extra(note), **kwargs)
    except ModelLoadError as exc:
        if asked == 0 or not is_out_of_device_memory(f"{exc.message} {exc.detail}"):
            raise
        log.warning("the GPU ran out of memory with n_gpu_layers=%d: %s", asked, exc.detail)
        failed = exc
    total = total or (asked if asked > 0 else 0)
    shown = total if asked < 0 else asked
    for layers in retry_ladder(asked, total) if total else (0,):
        sentence = fallback_sentence(
            asked=shown, loaded=layers, total_layers=total or shown, device_name=device_name
        )
        try:
            return load(
                path,
                replace(options, n_gpu_layers=layers),
                extra=_extra(f"{note} {sentence}".strip()),
                **kwargs,
            )
        except ModelLoadError as exc:
            if layers == 0 or not is_out_of_device_memory(f"{exc.message} {exc.detail}"):
                raise
            log.warning("the GPU ran out of memory with n_gpu_layers=%d too", layers)
            failed = exc
    raise failed  # (only without a ladder to step down; kept for the type checker)


def _extra(note: str) -> dict[str, str]:
    return {"device_note": note} if note else {}
