"""The chat database's schema, one migration step per format version.

Step i brings a file from ``PRAGMA user_version`` i to i + 1, inside one
transaction. Append only: a released step is never edited, because files in
the wild were made by it.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable

from engine.errors import StoreError
from engine.history.cipher import Database

# v1 (Hearth 0.1): conversations and a flat list of messages. AUTOINCREMENT keeps
# ids from being reused after a delete, so a stale id held by the UI or a
# ReplyRecorder can never hit a newer row.
_V1 = (
    """CREATE TABLE conversations (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        title TEXT NOT NULL,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    )""",
    """CREATE TABLE messages (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        conversation_id INTEGER NOT NULL
            REFERENCES conversations(id) ON DELETE CASCADE,
        role TEXT NOT NULL CHECK (role IN ('system', 'user', 'assistant')),
        content TEXT NOT NULL,
        status TEXT NOT NULL,
        created_at REAL NOT NULL
    )""",
    "CREATE INDEX conversations_newest ON conversations(updated_at DESC, id DESC)",
    "CREATE INDEX messages_in_order ON messages(conversation_id, id)",
)

# Fills the search index from scratch: finished messages only (see the triggers).
REBUILD_SEARCH = (
    "INSERT INTO messages_fts(messages_fts) VALUES ('delete-all')",
    """INSERT INTO messages_fts(rowid, content)
        SELECT id, content FROM messages WHERE status != 'streaming'""",
)

# v2: thinking apart from the answer; message versions as a tree; pinned, soft-deleted
# and auto-titled conversations; per-chat settings; full-text search.
_V2 = (
    "ALTER TABLE conversations ADD COLUMN pinned INTEGER NOT NULL DEFAULT 0",
    # Titles made before v2 may have been typed by the person: never overwrite them.
    "ALTER TABLE conversations ADD COLUMN title_is_auto INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE conversations ADD COLUMN deleted_at REAL",
    "ALTER TABLE conversations ADD COLUMN settings TEXT NOT NULL DEFAULT '{}'",
    "DROP INDEX conversations_newest",
    # The sidebar's order; partial, so deleted conversations cost the list nothing.
    """CREATE INDEX conversations_listed
        ON conversations(pinned DESC, updated_at DESC, id DESC) WHERE deleted_at IS NULL""",
    """CREATE INDEX conversations_deleted
        ON conversations(deleted_at) WHERE deleted_at IS NOT NULL""",
    "ALTER TABLE messages ADD COLUMN thinking TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE messages ADD COLUMN thinking_ms INTEGER NOT NULL DEFAULT 0",
    # The message before this one. No REFERENCES: the store re-links children itself
    # when it deletes a message, and an FK cascade down a 500-message chain would
    # run into SQLite's trigger depth limit (1000).
    "ALTER TABLE messages ADD COLUMN parent_id INTEGER",
    # Among messages with the same parent (versions of one turn), the highest
    # `chosen` is the one shown; choosing a version raises it. Each branch keeps its
    # own choice, so switching back shows what was there before.
    "ALTER TABLE messages ADD COLUMN chosen INTEGER NOT NULL DEFAULT 0",
    """UPDATE messages SET parent_id = (
        SELECT max(p.id) FROM messages AS p
        WHERE p.conversation_id = messages.conversation_id AND p.id < messages.id
    )""",
    "CREATE INDEX messages_tree ON messages(conversation_id, parent_id, chosen)",
    # Crash recovery on open looks for streaming replies; without this it would
    # scan every message on every start.
    "CREATE INDEX messages_streaming ON messages(status) WHERE status = 'streaming'",
    # Search covers the answer text only, never thinking. External content: the
    # text is stored once, in messages; the triggers keep the index in step.
    # prefix='2 3 4 5 6': search as you type finds words by their first 2-6 letters
    # without merging the lists of every word that starts so (a common word's start
    # took ~11 ms CPU on 500,000 messages); costs ~18% more file (bench/RESULTS.md).
    """CREATE VIRTUAL TABLE messages_fts USING fts5(
        content, content='messages', content_rowid='id',
        tokenize='unicode61 remove_diacritics 2', prefix='2 3 4 5 6'
    )""",
    # A reply is indexed once it is finished, not at each save while it streams:
    # re-indexing a long reply every second would cost the GUI thread milliseconds
    # that grow with the reply. Crash recovery (streaming -> interrupted) indexes it.
    """CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages
        WHEN new.status != 'streaming' BEGIN
        INSERT INTO messages_fts(rowid, content) VALUES (new.id, new.content);
    END""",
    """CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages
        WHEN old.status != 'streaming' BEGIN
        INSERT INTO messages_fts(messages_fts, rowid, content)
            VALUES ('delete', old.id, old.content);
    END""",
    # One trigger, so the old text always leaves the index before the new one enters.
    """CREATE TRIGGER messages_fts_update AFTER UPDATE OF content, status ON messages
        WHEN NOT (old.status = 'streaming' AND new.status = 'streaming')
            AND (old.content IS NOT new.content OR old.status IS NOT new.status) BEGIN
        INSERT INTO messages_fts(messages_fts, rowid, content)
            SELECT 'delete', old.id, old.content WHERE old.status != 'streaming';
        INSERT INTO messages_fts(rowid, content)
            SELECT new.id, new.content WHERE new.status != 'streaming';
    END""",
    *REBUILD_SEARCH,
)

# Chinese, Japanese and Korean: unicode61 makes a whole run of them one token (CJK
# has no spaces between words), so a word inside a sentence could not be found.
# Kana, CJK ideographs (with extension A, compatibility, and the supplementary
# planes), Hangul syllables, halfwidth katakana.
CJK_RANGES = (
    "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\uff66-\uff9f"
    "\U00020000-\U0003134f"
)
# Might hold CJK: one range from the first kana to the last ideograph, cheaper per
# character than the exact ranges (SQLite compares code points); what else falls in
# it (emoji, fullwidth forms) is queued and then skipped by the exact test.
_HAS_CJK = "GLOB '*[\u3040-\U0003134f]*'"

_CJK = re.compile(f"[{CJK_RANGES}]")


def queue_cjk(db: Database) -> int:
    """Queue every message with CJK text for the CJK index (engine.history.search indexes
    the queue); returns how many. In Python, not ``GLOB``: SQLite's ``[ranges]``
    test on every character of 500,000 messages took 15 s of CPU, this 0.8 s
    (most rows are ASCII, which ``str.isascii`` tells at C speed)."""
    ids = [
        (mid,)
        for mid, content in db.execute("SELECT id, content FROM messages")
        if not content.isascii() and _CJK.search(content)
    ]
    db.executemany("INSERT OR IGNORE INTO cjk_pending (id) VALUES (?)", ids)
    return len(ids)


# v3: a second index for messages with CJK text, where every CJK character is a
# token of its own (engine.history.search.segment puts spaces around them), so any run of
# characters is found as a phrase. Latin search keeps using messages_fts, unchanged.
# Splitting needs Python, which triggers cannot call without every connection (the
# sqlite3 shell, a script) registering a function; so the triggers only queue the
# changed ids, in plain SQL, and engine.history.search indexes the queue before a CJK query.
# A history without CJK pays one scan at this migration and nothing after.
_V3 = (
    "CREATE TABLE cjk_pending (id INTEGER PRIMARY KEY)",
    """CREATE VIRTUAL TABLE messages_cjk USING fts5(
        text, tokenize='unicode61 remove_diacritics 2', prefix='2 3'
    )""",
    f"""CREATE TRIGGER messages_cjk_insert AFTER INSERT ON messages
        WHEN new.content {_HAS_CJK} BEGIN
        INSERT OR IGNORE INTO cjk_pending (id) VALUES (new.id);
    END""",
    # Not at each save of a streaming reply (GLOB reads the whole text): its last
    # update, to a finished status, queues it.
    f"""CREATE TRIGGER messages_cjk_update AFTER UPDATE OF content, status ON messages
        WHEN NOT (old.status = 'streaming' AND new.status = 'streaming')
            AND (old.content {_HAS_CJK} OR new.content {_HAS_CJK}) BEGIN
        INSERT OR IGNORE INTO cjk_pending (id) VALUES (new.id);
    END""",
    f"""CREATE TRIGGER messages_cjk_delete AFTER DELETE ON messages
        WHEN old.content {_HAS_CJK} BEGIN
        INSERT OR IGNORE INTO cjk_pending (id) VALUES (old.id);
    END""",
)  # then queue_cjk(), in the same transaction (AFTER_STEP)

# v4: which model wrote each reply, so a chat that moved between models (a local file,
# a model on a server) shows each reply's own. Its ``ModelInfo.path``: the GGUF file's
# path, or a remote model's address ``{base_url}/models/{model}``. '' where unknown:
# the person's messages, and replies written before v4.
_V4 = ("ALTER TABLE messages ADD COLUMN model TEXT NOT NULL DEFAULT ''",)

# v5 (issue 13, images; issue 14, documents): a message's attachments. The files live
# in the database, not beside it: one file to back up, move, encrypt and delete, written
# in the same transaction as the message that shows them, and with secure_delete gone
# with it. Content-addressed: ``blobs`` holds each distinct file once (an edited
# question, a regenerated reply, a re-shown image share it) and the trigger removes a
# blob when the last attachment that names it goes: a deleted message, a purged chat
# (messages cascade to attachments, and the trigger fires for cascaded rows too).
_V5 = (
    """CREATE TABLE blobs (
        sha256 TEXT PRIMARY KEY,
        data BLOB NOT NULL
    ) WITHOUT ROWID""",
    """CREATE TABLE attachments (
        message_id INTEGER NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
        position INTEGER NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('image', 'document')),
        sha256 TEXT NOT NULL REFERENCES blobs(sha256),
        name TEXT NOT NULL,
        mime TEXT NOT NULL,
        size INTEGER NOT NULL,
        width INTEGER NOT NULL DEFAULT 0,
        height INTEGER NOT NULL DEFAULT 0,
        text TEXT NOT NULL DEFAULT '',
        PRIMARY KEY (message_id, position)
    ) WITHOUT ROWID""",
    "CREATE INDEX attachments_by_blob ON attachments(sha256)",
    """CREATE TRIGGER attachments_release AFTER DELETE ON attachments
        WHEN NOT EXISTS (SELECT 1 FROM attachments WHERE sha256 = old.sha256) BEGIN
        DELETE FROM blobs WHERE sha256 = old.sha256;
    END""",
)

# v6 (issue 14, documents): the retrieval index of attached documents: their chunks and
# a full-text index over them. Keyed by the file's ``sha256`` (the attachment's, whose
# text and bytes the attachments store keeps), so a document attached again, in any
# chat, is never indexed twice.
# ``chunk_count`` is NULL until every chunk is stored: chunks are written in batches,
# each its own transaction, so indexing that stopped half way (the app quit) goes on
# from the last batch. Porter stemming: a question about "functions" finds "function".
_V6 = (
    """CREATE TABLE documents (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        sha256 TEXT NOT NULL UNIQUE,
        kind TEXT NOT NULL,
        pages INTEGER,
        lines INTEGER,
        tokens INTEGER NOT NULL,
        chunk_count INTEGER,
        created_at REAL NOT NULL
    )""",
    """CREATE TABLE doc_chunks (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        document_id INTEGER NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
        idx INTEGER NOT NULL,
        heading TEXT NOT NULL,
        text TEXT NOT NULL,
        page INTEGER,
        page_end INTEGER,
        line_start INTEGER,
        line_end INTEGER,
        tokens INTEGER NOT NULL,
        UNIQUE (document_id, idx)
    )""",
    """CREATE VIRTUAL TABLE doc_chunks_fts USING fts5(
        heading, text, content='doc_chunks', content_rowid='id',
        tokenize='porter unicode61 remove_diacritics 2'
    )""",
    """CREATE TRIGGER doc_chunks_fts_insert AFTER INSERT ON doc_chunks BEGIN
        INSERT INTO doc_chunks_fts(rowid, heading, text) VALUES (new.id, new.heading, new.text);
    END""",
    """CREATE TRIGGER doc_chunks_fts_delete AFTER DELETE ON doc_chunks BEGIN
        INSERT INTO doc_chunks_fts(doc_chunks_fts, rowid, heading, text)
            VALUES ('delete', old.id, old.heading, old.text);
    END""",
    # An embedding model's vector of a chunk (float32, little-endian), per model: a
    # different model's vectors are not comparable, and switching back keeps them.
    """CREATE TABLE doc_vectors (
        chunk_id INTEGER NOT NULL REFERENCES doc_chunks(id) ON DELETE CASCADE,
        model TEXT NOT NULL,
        vector BLOB NOT NULL,
        PRIMARY KEY (chunk_id, model)
    ) WITHOUT ROWID""",
    # Which passages a reply was given, by the number it cites them with ([1]): by the
    # document's sha256 and the chunk's place in it, not the chunk's row, so they survive
    # an export and an import (which indexes the document again, the same way).
    """CREATE TABLE doc_citations (
        message_id INTEGER NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
        number INTEGER NOT NULL,
        sha256 TEXT NOT NULL,
        chunk_idx INTEGER NOT NULL,
        PRIMARY KEY (message_id, number)
    ) WITHOUT ROWID""",
    # Deleted with the attachment: when the last message holding the file goes, its
    # blob is released (attachments_release), and with it the index of its text.
    """CREATE TRIGGER documents_release AFTER DELETE ON blobs BEGIN
        DELETE FROM documents WHERE sha256 = old.sha256;
    END""",
)

# v7 (issue 16, tools): a reply's tool calls and their results, in order with its text,
# as JSON (engine/history/parts.py); '' for a message of text only (all before v7).
# Their text (a call's name and arguments, a result) is searchable in an index of its
# own (engine/history/tool_search.py): messages_fts indexes `content` exactly, and its
# integrity check at open compares the two. Kept by triggers in plain SQL (JSON1), so
# any connection that changes `parts` keeps it right; a reply is indexed once finished.
_TOOL_TEXT = """(SELECT group_concat(
        CASE json_extract(value, '$.type')
            WHEN 'tool_call' THEN json_extract(value, '$.name') || ' '
                || json_extract(value, '$.arguments')
            WHEN 'tool_result' THEN json_extract(value, '$.content')
        END, char(10)) FROM json_each({row}.parts))"""
_V7 = (
    "ALTER TABLE messages ADD COLUMN parts TEXT NOT NULL DEFAULT ''",
    """CREATE VIRTUAL TABLE tool_fts USING fts5(
        text, tokenize='unicode61 remove_diacritics 2', prefix='2 3'
    )""",
    f"""CREATE TRIGGER tool_fts_insert AFTER INSERT ON messages
        WHEN new.parts != '' AND new.status != 'streaming' AND json_valid(new.parts) BEGIN
        INSERT INTO tool_fts(rowid, text) VALUES (new.id, {_TOOL_TEXT.format(row="new")});
    END""",
    f"""CREATE TRIGGER tool_fts_update AFTER UPDATE OF parts, status ON messages
        WHEN new.status != 'streaming' AND (old.parts != '' OR new.parts != '') BEGIN
        DELETE FROM tool_fts WHERE rowid = old.id;
        INSERT INTO tool_fts(rowid, text)
            SELECT new.id, {_TOOL_TEXT.format(row="new")}
            WHERE new.parts != '' AND json_valid(new.parts);
    END""",
    """CREATE TRIGGER tool_fts_delete AFTER DELETE ON messages WHEN old.parts != '' BEGIN
        DELETE FROM tool_fts WHERE rowid = old.id;
    END""",
)

MIGRATIONS: tuple[tuple[str, ...], ...] = (_V1, _V2, _V3, _V4, _V5, _V6, _V7)
# Work in Python that a step needs, run after its statements in its transaction.
AFTER_STEP: dict[int, Callable[[Database], object]] = {2: queue_cjk}


def rebuild_cjk(db: Database) -> None:
    """Empty the CJK index and queue every message with CJK text again."""
    db.execute("DELETE FROM messages_cjk")
    queue_cjk(db)


SCHEMA_VERSION = len(MIGRATIONS)


def has_fts5() -> bool:
    """Whether this Python's SQLite can do full-text search (FTS5)."""
    db = sqlite3.connect(":memory:")
    try:
        db.execute("CREATE VIRTUAL TABLE probe USING fts5(x)")
    except sqlite3.OperationalError:
        return False
    finally:
        db.close()
    return True


def require_fts5() -> None:
    if not has_fts5():
        raise StoreError(
            f"This Python's SQLite ({sqlite3.sqlite_version}) was built without full-text "
            "search (FTS5), which Hearth's chat history needs: install Hearth's own package, "
            "or run it with a Python whose SQLite includes FTS5."
        )
