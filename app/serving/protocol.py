"""OpenAI's chat-completions protocol, both ways: a request's JSON becomes a ``Turn`` and
sampling overrides for the one ``ChatBackend``; its events become OpenAI's response
objects and stream chunks. No sockets and no Qt here (app/serving/server.py serves it).

What Hearth reads of a request:
- ``messages``: system/developer, user and assistant messages whose content is text (a
  string, or a list of ``{"type": "text"}`` parts); an assistant's ``reasoning_content``
  is its thinking. A last assistant message is continued (as llama-server does).
- sampling: ``max_tokens``/``max_completion_tokens`` (the answer's budget; thinking gets
  at most as much again), ``temperature``, ``top_p``, ``seed``, ``presence_penalty``,
  ``frequency_penalty``, and llama.cpp's/vLLM's ``top_k``, ``min_p``, ``repeat_penalty``
  (``repetition_penalty``); whatever a request leaves out is the model's recommendation.
- thinking: ``chat_template_kwargs.enable_thinking`` (llama-server, vLLM),
  ``reasoning_effort`` (``"none"`` turns it off), Ollama's ``think``.
- ``stop`` (a string or up to 4), ``stream``, ``stream_options.include_usage``.
What it refuses with a sentence (400): tools, images, ``n`` > 1, logprobs, a
``response_format`` other than text.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from engine.types import FinishReason, GenerationStats, Message, Role, Turn

__all__ = [
    "ApiError",
    "ChatRequest",
    "Reply",
    "StopScanner",
    "chunk",
    "completion",
    "error_body",
    "finish_reason",
    "models_body",
    "parse_chat_request",
    "usage_body",
]

MAX_STOPS = 4
_ROLES: Mapping[str, Role] = {
    "system": "system",
    "developer": "system",
    "user": "user",
    "assistant": "assistant",
}
_NUMBERS: Mapping[str, type[int] | type[float]] = {
    "temperature": float,
    "top_p": float,
    "presence_penalty": float,
    "frequency_penalty": float,
    "top_k": int,
    "min_p": float,
    "repeat_penalty": float,
    "seed": int,
}


class ApiError(Exception):
    """A request Hearth answers with OpenAI's error JSON: ``status`` and a sentence."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        kind: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind
        self.code = code
        self.param = param
        self.retry_after = retry_after

    def body(self) -> dict[str, Any]:
        return error_body(self.message, kind=self.kind, code=self.code, param=self.param)


def error_body(
    message: str, *, kind: str = "invalid_request_error", code: str | None = None,
    param: str | None = None,
) -> dict[str, Any]:  # fmt: skip
    """OpenAI's error object, which its clients turn into their exceptions."""
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def _bad(message: str, param: str | None = None) -> ApiError:
    return ApiError(400, message, param=param)


@dataclass(frozen=True, slots=True, kw_only=True)
class ChatRequest:
    """One ``POST /v1/chat/completions``, checked."""

    model: str
    turn: Turn
    stream: bool = False
    include_usage: bool = False
    stops: tuple[str, ...] = ()
    overrides: Mapping[str, float | int] = field(default_factory=dict)


def parse_chat_request(raw: bytes) -> ChatRequest:
    """``raw`` (the request body) as a ``ChatRequest``; ``ApiError`` (400) naming what is
    wrong and how to send it instead."""
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _bad(f"The request body is not valid JSON ({exc}). Send a JSON object.") from exc
    if not isinstance(body, dict):
        raise _bad("The request body must be a JSON object with 'model' and 'messages'.")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _bad("Name the model in 'model' (GET /v1/models lists it).", "model")
    _refuse_unsupported(body)
    messages = _messages(body.get("messages"))
    overrides = _sampling(body)
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise _bad("'stream' must be true or false.", "stream")
    options = body.get("stream_options") or {}
    if not isinstance(options, dict):
        raise _bad("'stream_options' must be an object.", "stream_options")
    continue_reply = messages[-1].role == "assistant"
    if body.get("continue_final_message") is False or body.get("add_generation_prompt") is True:
        continue_reply = False
    turn = Turn(
        messages=tuple(messages),
        thinking=_thinking(body),
        overrides=overrides,
        continue_reply=continue_reply,
    )
    return ChatRequest(
        model=model,
        turn=turn,
        stream=stream,
        include_usage=bool(options.get("include_usage", False)),
        stops=_stops(body.get("stop")),
        overrides=overrides,
    )


def _refuse_unsupported(body: Mapping[str, Any]) -> None:
    if body.get("tools") or body.get("functions"):
        raise _bad(
            "Hearth's local API does not run tools yet. Send the request without 'tools'.",
            "tools",
        )
    n = body.get("n", 1)
    if n not in (1, None):
        raise _bad("Hearth writes one reply per request: leave 'n' out or set it to 1.", "n")
    if body.get("logprobs") or body.get("top_logprobs"):
        raise _bad("Hearth's local API does not return logprobs. Leave 'logprobs' out.", "logprobs")
    fmt = body.get("response_format")
    if fmt is not None and (not isinstance(fmt, dict) or fmt.get("type") != "text"):
        raise _bad(
            "Hearth's local API writes plain text only: leave 'response_format' out.",
            "response_format",
        )


def _messages(raw: object) -> list[Message]:
    if not isinstance(raw, list) or not raw:
        raise _bad("'messages' must be a list with at least one message.", "messages")
    messages: list[Message] = []
    for i, item in enumerate(raw):
        where = f"messages[{i}]"
        if not isinstance(item, dict):
            raise _bad(f"{where} must be an object with 'role' and 'content'.", where)
        role = _ROLES.get(str(item.get("role")))
        if role is None:
            raise _bad(
                f"{where} has the role {item.get('role')!r}; Hearth reads 'system', "
                "'developer', 'user' and 'assistant' messages.",
                f"{where}.role",
            )
        thinking = item.get("reasoning_content") or item.get("reasoning") or ""
        if not isinstance(thinking, str):
            raise _bad(f"{where}.reasoning_content must be text.", where)
        messages.append(Message(role, _text(item.get("content"), where), thinking))
    return messages


def _text(content: object, where: str) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        pieces: list[str] = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text":
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise _bad(
                    f"{where} has a {kind!r} part; Hearth's local API reads text parts only.",
                    f"{where}.content",
                )
            text = part.get("text")
            if not isinstance(text, str):
                raise _bad(f"{where} has a text part without text.", f"{where}.content")
            pieces.append(text)
        return "".join(pieces)
    raise _bad(f"{where}.content must be text or a list of text parts.", f"{where}.content")


def _sampling(body: Mapping[str, Any]) -> dict[str, float | int]:
    overrides: dict[str, float | int] = {}
    for name, kind in _NUMBERS.items():
        value = body.get(name)
        if value is None and name == "repeat_penalty":
            value = body.get("repetition_penalty")
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _bad(f"'{name}' must be a number.", name)
        if kind is int and value != int(value):
            raise _bad(f"'{name}' must be a whole number.", name)
        overrides[name] = kind(value)
    budget = body.get("max_completion_tokens", body.get("max_tokens"))
    if budget is not None:
        if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
            raise _bad("'max_tokens' must be a whole number of at least 1.", "max_tokens")
        overrides["max_tokens"] = budget
    checks = {
        "temperature": (0.0, 2.0),
        "top_p": (1e-9, 1.0),
        "min_p": (0.0, 1.0),
        "presence_penalty": (-2.0, 2.0),
        "frequency_penalty": (-2.0, 2.0),
        "repeat_penalty": (0.0, 10.0),
    }
    for name, (low, high) in checks.items():
        if name in overrides and not low <= overrides[name] <= high:
            raise _bad(f"'{name}' must be between {low:g} and {high:g}.", name)
    if overrides.get("top_k", 0) < 0:
        raise _bad("'top_k' cannot be negative.", "top_k")
    return overrides


def _thinking(body: Mapping[str, Any]) -> bool | None:
    kwargs = body.get("chat_template_kwargs")
    if isinstance(kwargs, dict) and isinstance(kwargs.get("enable_thinking"), bool):
        return bool(kwargs["enable_thinking"])
    if isinstance(body.get("think"), bool):
        return bool(body["think"])
    effort = body.get("reasoning_effort")
    if isinstance(effort, str):
        return effort not in ("none", "minimal")
    return None


def _stops(raw: object) -> tuple[str, ...]:
    if raw is None:
        return ()
    stops = [raw] if isinstance(raw, str) else raw
    if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
        raise _bad("'stop' must be a string or a list of strings.", "stop")
    if len(stops) > MAX_STOPS:
        raise _bad(f"'stop' takes at most {MAX_STOPS} strings.", "stop")
    return tuple(s for s in stops if s)


class StopScanner:
    """Holds back the end of the answer that could be the start of a stop string, and
    says when one appeared (the reply then ends before it)."""

    def __init__(self, stops: Sequence[str]) -> None:
        self._stops = tuple(stops)
        self._held = ""
        self.hit = False

    def feed(self, text: str) -> str:
        """What of the answer so far may be sent now."""
        if not self._stops:
            return text
        held = self._held + text
        cut = min((i for i in (held.find(s) for s in self._stops) if i >= 0), default=-1)
        if cut >= 0:
            self.hit = True
            self._held = ""
            return held[:cut]
        keep = 0
        for stop in self._stops:
            for n in range(min(len(stop) - 1, len(held)), keep, -1):
                if held.endswith(stop[:n]):
                    keep = n
                    break
        self._held = held[len(held) - keep :] if keep else ""
        return held[: len(held) - keep]

    def flush(self) -> str:
        """The rest, when the reply ended without a stop string."""
        held, self._held = self._held, ""
        return held


def finish_reason(reason: FinishReason, *, stopped: bool) -> str:
    """OpenAI's name for why a reply ended (a full context is a cut reply too)."""
    if stopped or reason is FinishReason.STOP:
        return "stop"
    return "length"


def usage_body(stats: GenerationStats) -> dict[str, Any]:
    return {
        "prompt_tokens": stats.prompt_tokens,
        "completion_tokens": stats.completion_tokens,
        "total_tokens": stats.prompt_tokens + stats.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": stats.reused_tokens},
        "completion_tokens_details": {"reasoning_tokens": stats.thinking_tokens},
    }


@dataclass(slots=True)
class Reply:
    """One response's identity: its id, its time and the model that writes it."""

    model: str
    id: str = field(default_factory=lambda: f"chatcmpl-{uuid.uuid4().hex[:24]}")
    created: int = field(default_factory=lambda: int(time.time()))


def chunk(
    reply: Reply,
    delta: Mapping[str, str],
    *,
    finish: str | None = None,
    usage: bool = False,
) -> dict[str, Any]:
    """One ``chat.completion.chunk``; with ``usage`` (include_usage asked), ``"usage": null``
    as OpenAI sends on every chunk before the last."""
    body: dict[str, Any] = {
        "id": reply.id,
        "object": "chat.completion.chunk",
        "created": reply.created,
        "model": reply.model,
        "system_fingerprint": None,
        "choices": [{"index": 0, "delta": dict(delta), "logprobs": None, "finish_reason": finish}],
    }
    if usage:
        body["usage"] = None
    return body


def usage_chunk(reply: Reply, stats: GenerationStats) -> dict[str, Any]:
    """The last chunk with ``include_usage``: no choices, the figures."""
    return {
        "id": reply.id,
        "object": "chat.completion.chunk",
        "created": reply.created,
        "model": reply.model,
        "system_fingerprint": None,
        "choices": [],
        "usage": usage_body(stats),
    }


def completion(
    reply: Reply, text: str, thinking: str, finish: str, stats: GenerationStats
) -> dict[str, Any]:
    """The whole ``chat.completion`` of a request that did not stream."""
    message: dict[str, Any] = {"role": "assistant", "content": text, "refusal": None}
    if thinking:
        message["reasoning_content"] = thinking
    return {
        "id": reply.id,
        "object": "chat.completion",
        "created": reply.created,
        "model": reply.model,
        "system_fingerprint": None,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
        "usage": usage_body(stats),
    }


def models_body(model_id: str | None, created: int) -> dict[str, Any]:
    """``GET /v1/models``: the loaded model, or none while one loads."""
    data = []
    if model_id is not None:
        data.append({"id": model_id, "object": "model", "created": created, "owned_by": "hearth"})
    return {"object": "list", "data": data}
