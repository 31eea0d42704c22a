"""The state that drives the Send/Stop button and the composer."""

from __future__ import annotations

from enum import Enum, auto


class ResponseState(Enum):
    NO_MODEL = auto()  # nothing loaded (load failed): can type, cannot send
    LOADING = auto()  # a model is loading
    IDLE = auto()  # ready to send
    GENERATING = auto()  # a reply is streaming: the button stops it
    STOPPING = auto()  # stop asked, waiting for the engine to let go
