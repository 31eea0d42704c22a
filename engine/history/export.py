"""Export chats as Markdown (to read) or JSON (to keep, and to import back).

JSON export, format "hearth-chats" version 2::

    {"format": "hearth-chats", "version": 2, "exported_at": <seconds>,
     "conversations": [{"title", "title_is_auto", "pinned", "created_at",
                        "updated_at", "settings", "messages": [...],
                        "files": {<sha256>: <base64>, ...}}, ...]}

Each message: ``key`` (its number in this conversation, from 1), ``parent``
(the key of the message before it, or null), ``role``, ``content`` (the
answer), ``thinking``, ``thinking_ms``, ``model`` (which model wrote a reply: a GGUF
file's path or a remote model's address; "" if unknown; optional on import, since
files from before it have none), ``status``, ``created_at``, ``active``
(the version shown among those with the same parent), and, only when it has
any, ``attachments``: a list of ``{"kind": "image"|"document", "sha256", "name",
"mime", "size", "width", "height", "text"}`` in their order (the model reads them
before the text). Their bytes are in the conversation's ``files``, once per distinct
file (base64; present only when some message has an attachment), checked against
the hash on import. A reply that was given passages of its documents has
``citations``: ``[{"number", "sha256", "chunk"}]`` (the document and the chunk's place
in it; the importing Hearth indexes the document again, the same way). Version 1
(before attachments) has none of these and is read the same way. Times are seconds since
the Unix epoch. Every version of every turn is kept. Database ids are not
written, so export -> import -> export gives the same bytes; only
``exported_at`` differs (pass the same value to compare). Conversations are
written oldest first; import adds them as new conversations, keeping their
times, titles, pins and settings. A reply exported while it streamed is
imported as interrupted. A setting that names a message (``context_from``, the
first message the model still reads after "Drop the oldest turns") holds that
message's key in the file and its new id after import; one that names no
message of its conversation is left out rather than kept pointing elsewhere.

Markdown has the shown version of each turn only, and no thinking unless asked;
a note marks where the model stopped reading, and a line such as
``*[Image: photo.jpg, 1280×720]*`` each attachment (the file itself is not written).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, cast, get_args

from engine.errors import KnownError
from engine.history.attachments import kind_of, sha256_of
from engine.history.messages import ImportItem
from engine.history.parts import parts_from_list, parts_to_list
from engine.history.store import ChatStore
from engine.history.turns import CONTEXT_FROM
from engine.history.types import Conversation, MessageStatus, StoredMessage
from engine.types import (
    AttachmentPart,
    DocumentPart,
    ImagePart,
    Part,
    Role,
    TextPart,
    ToolCallPart,
    ToolResultPart,
)

FORMAT = "hearth-chats"
VERSION = 2
_ROLE_NAMES = {"system": "System", "user": "You", "assistant": "Assistant"}
_STATUS_NOTES = {
    MessageStatus.STOPPED: "stopped",
    MessageStatus.LENGTH: "cut off at the reply length limit",
    MessageStatus.CONTEXT: "cut off: the conversation filled the model's context window",
    MessageStatus.FAILED: "failed",
    MessageStatus.INTERRUPTED: "interrupted",
    MessageStatus.STREAMING: "still being written",
}
# Per-chat settings whose value is a message's database id (engine.history.turns
# CONTEXT_FROM): written as the message's key, read back as its new id.
MESSAGE_ID_SETTINGS = (CONTEXT_FROM,)
_CONTEXT_START_NOTE = "*(The model no longer reads the messages above.)*"


class ChatImportError(KnownError):
    """A file that is not a Hearth chat export (or one from a newer Hearth)."""


class ExportWriteError(KnownError):
    """An export could not be written to disk."""


def _conversation_ids(store: ChatStore, conv_ids: Sequence[int] | None) -> list[int]:
    if conv_ids is not None:
        return list(conv_ids)
    return sorted(c.id for c in store.list_conversations())


def _renumbered(settings: Mapping[str, object], numbers: Mapping[int, int]) -> dict[str, Any]:
    """``settings`` with each message-valued one renumbered by ``numbers`` (old ->
    new), or left out if it names a message ``numbers`` does not know."""
    out: dict[str, Any] = {}
    for name, value in settings.items():
        if name not in MESSAGE_ID_SETTINGS:
            out[name] = value
        elif (number := _message_number(value)) is not None and number in numbers:
            out[name] = numbers[number]
    return out


def _message_number(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _attachment_json(part: AttachmentPart) -> dict[str, Any]:
    width, height = (part.width, part.height) if isinstance(part, ImagePart) else (0, 0)
    return {
        "kind": kind_of(part),
        "sha256": part.sha256,
        "name": part.name,
        "mime": part.mime,
        "size": part.size,
        "width": width,
        "height": height,
        "text": part.text if isinstance(part, DocumentPart) else "",
    }


def _message_json(
    m: StoredMessage,
    keys: Mapping[int, int],
    citations: Sequence[tuple[int, str, int]] = (),
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "key": keys[m.id],
        "parent": None if m.parent_id is None else keys[m.parent_id],
        "role": m.role,
        "content": m.content,
        "thinking": m.thinking,
        "thinking_ms": m.thinking_ms,
        "model": m.model,
        "status": m.status.value,
        "created_at": m.created_at,
        "active": m.active,
    }
    if m.attachments:
        out["attachments"] = [_attachment_json(a) for a in m.attachments]
    if citations:  # the passages of its documents a reply was given (issue 14)
        out["citations"] = [{"number": n, "sha256": sha, "chunk": i} for n, sha, i in citations]
    if m.parts:  # a reply that called tools (issue 16)
        out["parts"] = parts_to_list(m.parts)
    return out


def _files_json(store: ChatStore, messages: Sequence[StoredMessage]) -> dict[str, str]:
    hashes = sorted({a.sha256 for m in messages for a in m.attachments})
    files = {}
    for sha in hashes:
        data = store.attachment_data(sha)
        if data is not None:
            files[sha] = base64.b64encode(data).decode("ascii")
    return files


def _conversation_json(store: ChatStore, conv: Conversation) -> dict[str, Any]:
    messages = store.all_messages(conv.id)
    keys = {m.id: n for n, m in enumerate(messages, start=1)}
    refs = store.citation_refs([m.id for m in messages if m.role == "assistant"])
    out: dict[str, Any] = {
        "title": conv.title,
        "title_is_auto": conv.title_is_auto,
        "pinned": conv.pinned,
        "created_at": conv.created_at,
        "updated_at": conv.updated_at,
        "settings": _renumbered(store.conversation_settings(conv.id), keys),
        "messages": [_message_json(m, keys, refs.get(m.id, ())) for m in messages],
    }
    if files := _files_json(store, messages):
        out["files"] = files
    return out


def json_chunks(
    store: ChatStore, conv_ids: Sequence[int] | None = None, *, exported_at: float | None = None
) -> Iterator[str]:
    """The JSON export piece by piece (all live conversations if ``conv_ids`` is None).

    The whole equals ``json.dumps(document, indent=2, ensure_ascii=False) + "\\n"``.
    """
    head = {"format": FORMAT, "version": VERSION, "exported_at": exported_at or time.time()}
    opening = json.dumps(head, indent=2, ensure_ascii=False)[:-2]  # without "\n}"
    yield opening + ',\n  "conversations": ['
    first = True
    for conv_id in _conversation_ids(store, conv_ids):
        conv = store.conversation(conv_id)
        if conv is None:
            continue
        body = json.dumps(_conversation_json(store, conv), indent=2, ensure_ascii=False)
        yield ("\n" if first else ",\n") + "\n".join("    " + line for line in body.split("\n"))
        first = False
    yield "]\n}\n" if first else "\n  ]\n}\n"


def export_json(
    store: ChatStore, conv_ids: Sequence[int] | None = None, *, exported_at: float | None = None
) -> str:
    return "".join(json_chunks(store, conv_ids, exported_at=exported_at))


def _quote(text: str) -> str:
    return "\n".join(("> " + line).rstrip() for line in text.split("\n"))


def _fence(text: str, lang: str = "") -> str:
    """``text`` in a code fence longer than any backtick run inside it: tool output
    stays inert text in any Markdown viewer (no links, images or HTML)."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    ticks = "`" * max(3, longest + 1)
    return f"{ticks}{lang}\n{text}\n{ticks}"


def _parts_markdown(parts: Sequence[Part]) -> list[str]:
    out: list[str] = []
    for p in parts:
        if isinstance(p, TextPart):
            if p.text.strip():
                out.append(p.text.strip())
        elif isinstance(p, ToolCallPart):
            where = f" ({p.server})" if p.server else ""
            args = json.dumps(p.plain_arguments(), ensure_ascii=False, indent=2)
            out.append(_quote(f"**Tool call: {p.name}**{where}\n\n{_fence(args, 'json')}"))
        elif isinstance(p, ToolResultPart):
            state = "result" if p.ok else "not run / failed"
            out.append(
                _quote(f"**Tool {state}: {p.name}** ({p.duration_ms} ms)\n\n{_fence(p.content)}")
            )
    return out


def _message_markdown(m: StoredMessage, include_thinking: bool) -> str:
    parts = [f"### {_ROLE_NAMES[m.role]}"]
    if include_thinking and m.thinking:
        seconds = f" ({m.thinking_ms / 1000:.0f} s)" if m.thinking_ms else ""
        parts.append(_quote(f"**Thinking**{seconds}\n\n{m.thinking.strip()}"))
    parts.extend(_attachment_note(a) for a in m.attachments)
    if m.parts:
        parts.extend(_parts_markdown(m.parts))
    elif m.content:
        parts.append(m.content.strip())
    if m.status in _STATUS_NOTES:
        parts.append(f"*({_STATUS_NOTES[m.status]})*")
    return "\n\n".join(parts)


def _attachment_note(part: AttachmentPart) -> str:
    name = part.name or "pasted"
    if isinstance(part, ImagePart):
        pixels = f", {part.width}×{part.height}" if part.width and part.height else ""
        return f"*[Image: {name}{pixels}]*"
    return f"*[Document: {name}]*"


def markdown_chunks(
    store: ChatStore, conv_ids: Sequence[int] | None = None, *, include_thinking: bool = False
) -> Iterator[str]:
    """Each conversation as Markdown (its shown messages), separated by rules."""
    first = True
    for conv_id in _conversation_ids(store, conv_ids):
        conv = store.conversation(conv_id)
        if conv is None:
            continue
        when = datetime.fromtimestamp(conv.created_at).strftime("%Y-%m-%d %H:%M")
        parts = [f"# {conv.title}", f"*{when}*"]
        start = _message_number(store.conversation_settings(conv_id).get(CONTEXT_FROM))
        for n, m in enumerate(store.messages(conv_id)):
            if n and m.id == start:  # as the chat view's divider: not above the first
                parts.append(_CONTEXT_START_NOTE)
            parts.append(_message_markdown(m, include_thinking))
        yield ("" if first else "\n---\n\n") + "\n\n".join(parts) + "\n"
        first = False


def export_markdown(
    store: ChatStore, conv_ids: Sequence[int] | None = None, *, include_thinking: bool = False
) -> str:
    return "".join(markdown_chunks(store, conv_ids, include_thinking=include_thinking))


def write_export(path: Path, chunks: Iterable[str]) -> None:
    """Write an export atomically: the file appears whole or not at all."""
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    except OSError as e:
        raise _write_failed(path, e) from e
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as out:
            for chunk in chunks:
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise _write_failed(path, e) from e
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_failed(path: Path, e: OSError) -> ExportWriteError:
    return ExportWriteError(
        f"Could not save the export to {path} ({e.strerror or e}). Check that the disk has "
        "free space and that you may write to that folder.",
        detail=repr(e),
    )


# -- import --------------------------------------------------------------------------


def _bad(why: str) -> ChatImportError:
    return ChatImportError(f"This file is not a Hearth chat export ({why}); nothing was imported.")


def _field(obj: dict[str, Any], name: str, kind: type | tuple[type, ...], where: str) -> Any:
    value = obj.get(name)
    # bool is an int in Python; a number field must not accept true/false.
    if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _kinds(kind)):
        raise _bad(f"{where}: '{name}' is missing or of the wrong type")
    return value


def _kinds(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


Citations = dict[int, list[tuple[int, str, int]]]  # message key -> (number, sha256, chunk)


def _parse_citations(raw: object, at: str) -> list[tuple[int, str, int]]:
    if not isinstance(raw, list):
        raise _bad(f"{at}: 'citations' is not a list")
    out = []
    for c in raw:
        if not isinstance(c, dict):
            raise _bad(f"{at}: a citation is not an object")
        number, sha, chunk = c.get("number"), c.get("sha256"), c.get("chunk")
        if not (
            isinstance(number, int)
            and isinstance(chunk, int)
            and isinstance(sha, str)
            and len(sha) == 64
        ):
            raise _bad(f"{at}: a citation needs a number, a sha256 and a chunk")
        out.append((number, sha, chunk))
    return out


def _parse_conversation(raw: object, n: int, citations: Citations | None = None) -> ImportItem:
    where = f"conversation {n}"
    if not isinstance(raw, dict):
        raise _bad(f"{where} is not an object")
    number = (int, float)
    conv = Conversation(
        0,
        _field(raw, "title", str, where),
        float(_field(raw, "created_at", number, where)),
        float(_field(raw, "updated_at", number, where)),
        _field(raw, "pinned", bool, where),
        _field(raw, "title_is_auto", bool, where),
    )
    settings = _field(raw, "settings", dict, where)
    files = _parse_files(raw.get("files", {}), where)
    messages: list[StoredMessage] = []
    keys: set[int] = set()
    for i, m in enumerate(_field(raw, "messages", list, where), start=1):
        at = f"{where}, message {i}"
        if not isinstance(m, dict):
            raise _bad(f"{at} is not an object")
        key, parent = _field(m, "key", int, at), m.get("parent")
        if parent is not None and (isinstance(parent, bool) or parent not in keys):
            raise _bad(f"{at}: 'parent' is not the key of an earlier message")
        if key in keys:
            raise _bad(f"{where}: two messages have the same key")
        keys.add(key)
        role, status = _field(m, "role", str, at), _field(m, "status", str, at)
        if role not in get_args(Role) or status not in {s.value for s in MessageStatus}:
            raise _bad(f"{at}: unknown role or status")
        messages.append(
            StoredMessage(
                key, 0, cast(Role, role), _field(m, "content", str, at), MessageStatus(status),
                float(_field(m, "created_at", number, at)), _field(m, "thinking", str, at),
                _field(m, "thinking_ms", int, at), parent, active=_field(m, "active", bool, at),
                # Optional: files exported before Hearth kept it have none.
                model=_field(m, "model", str, at) if "model" in m else "",
                attachments=_parse_attachments(m.get("attachments", []), files, at),
                parts=parts_from_list(m.get("parts")),
            )
        )  # fmt: skip
        if "citations" in m and citations is not None:
            citations[key] = _parse_citations(m["citations"], at)
    return conv, messages, settings


def _parse_files(raw: object, where: str) -> dict[str, bytes]:
    if not isinstance(raw, dict):
        raise _bad(f"{where}: 'files' is not an object")
    files = {}
    for sha, encoded in raw.items():
        try:
            data = base64.b64decode(encoded, validate=True) if isinstance(encoded, str) else None
        except (binascii.Error, ValueError):
            data = None
        if data is None or sha256_of(data) != sha:
            raise _bad(f"{where}: the attached file {str(sha)[:12]}… is damaged")
        files[sha] = data
    return files


def _parse_attachments(
    raw: object, files: Mapping[str, bytes], at: str
) -> tuple[AttachmentPart, ...]:
    if not isinstance(raw, list):
        raise _bad(f"{at}: 'attachments' is not a list")
    out: list[AttachmentPart] = []
    for a in raw:
        if not isinstance(a, dict):
            raise _bad(f"{at}: an attachment is not an object")
        kind, sha = _field(a, "kind", str, at), _field(a, "sha256", str, at)
        if sha not in files:
            raise _bad(f"{at}: the file of an attachment is missing")
        name, mime = _field(a, "name", str, at), _field(a, "mime", str, at)
        size = len(files[sha])
        if kind == "image":
            width, height = _field(a, "width", int, at), _field(a, "height", int, at)
            out.append(ImagePart(sha256=sha, name=name, mime=mime, size=size, width=width,
                                 height=height, data=files[sha]))  # fmt: skip
        elif kind == "document":
            text = _field(a, "text", str, at)
            out.append(DocumentPart(sha256=sha, name=name, mime=mime, size=size, text=text,
                                    data=files[sha]))  # fmt: skip
        else:
            raise _bad(f"{at}: an attachment of unknown kind {kind!r}")
    return tuple(out)


def parse_json(text: str | bytes, citations: list[Citations] | None = None) -> list[ImportItem]:
    """Check a JSON export and turn it into what ``ChatStore.import_conversations`` takes.

    Like each message's ``id`` and ``parent_id``, a setting that names a message
    holds its key; ``import_json`` turns it into the new id (the store does not)."""
    try:
        doc = json.loads(text)
    except (ValueError, UnicodeDecodeError) as e:
        raise _bad(f"it is not valid JSON: {e}") from e
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise _bad("it has no 'format': 'hearth-chats' marker")
    version = doc.get("version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise _bad("it has no format version")
    if version > VERSION:
        raise ChatImportError(
            f"This chat export was made by a newer version of Hearth (format {version}; this "
            f"version reads up to {VERSION}). Update Hearth to import it."
        )
    conversations = doc.get("conversations")
    if not isinstance(conversations, list):
        raise _bad("it has no list of conversations")
    items = []
    for n, c in enumerate(conversations, start=1):
        found: Citations = {}
        items.append(_parse_conversation(c, n, found))
        if citations is not None:  # each reply's cited passages, by message key
            citations.append(found)
    return items


def import_json(store: ChatStore, text: str | bytes) -> list[int]:
    """Add the export's conversations to the store, all or none; their new ids.

    Settings that name a message are stored without it first, then with the
    message's new id: should that second write fail, the copy's model reads the
    whole chat again, which is never a message of another chat."""
    cited: list[Citations] = []
    items = parse_json(text, cited)
    keyed = [{k: s[k] for k in MESSAGE_ID_SETTINGS if k in s} for _, _, s in items]
    plain = [
        (conv, messages, {k: v for k, v in s.items() if k not in MESSAGE_ID_SETTINGS})
        for conv, messages, s in items
    ]
    new_ids = store.import_conversations(plain)
    for conv_id, (_, messages, settings), refs, cites in zip(
        new_ids, plain, keyed, cited, strict=True
    ):
        if cites:  # by the document and the chunk's place: indexed again, they match
            ids = {m.id: s.id for m, s in zip(messages, store.all_messages(conv_id), strict=True)}
            store.add_citation_refs({ids[key]: rows for key, rows in cites.items()})
        if not refs:
            continue
        # The store inserts an item's messages in order, so ids ascend with them.
        stored = store.all_messages(conv_id)
        numbers = {m.id: s.id for m, s in zip(messages, stored, strict=True)}
        renumbered = _renumbered(refs, numbers)
        if renumbered:
            store.set_conversation_settings(conv_id, {**settings, **renumbered})
    return new_ids
