"""What the download tests share: one model file, served the way the Hub serves it by
a Hub-protocol server on 127.0.0.1 (the real Hub cannot be reached here)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.hubserver import HubServer

REPO = "unsloth/Qwen3.5-9B-GGUF"
FILE = "Qwen3.5-9B-Q4_K_M.gguf"
SIZE = 6 * 1024 * 1024 + 12345  # not a multiple of the 1 MiB read size
CHUNK = 1 << 20  # engine.models.download reads (and so resumes) in whole MiB
# The family's vision projector: every repo calls it this; Hearth stores it under
# PROJECTOR_LOCAL next to the model (issue 13).
PROJECTOR = "mmproj-F16.gguf"
PROJECTOR_LOCAL = "Qwen3.5-9B-mmproj-F16.gguf"


@pytest.fixture(scope="module")
def payload() -> bytes:
    return os.urandom(SIZE)


@pytest.fixture(scope="module")
def projector_payload() -> bytes:
    return os.urandom(200_000)


@pytest.fixture
def hub(payload: bytes, projector_payload: bytes) -> Iterator[HubServer]:
    with HubServer() as server:
        server.add_file(REPO, FILE, payload)
        server.add_file(REPO, PROJECTOR, projector_payload)
        yield server
