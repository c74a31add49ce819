"""The idempotency ledger of ``eventodb consume --idempotency PATH``: a SQLite file of the message
ids a consumer has handled.

Keyed by (consumer identity, message id). The identity defaults to the category, so the members of
one group (of any size: a rolling scale-up runs two sizes at once) share what they have handled
when they share the file, and two different consumers of the same category keep apart by giving
different ``--consumer-id`` values. (The reference kit keys by event id alone, so two different
consumers sharing a database skip each other's events: PROTOCOL.md section 12.)

Each id is committed on its own, right after its handler succeeds, so a kill repeats at most the
message that was in flight. WAL with ``synchronous=NORMAL``: a commit survives the process being
killed; a power cut may forget the last commits, which then only means those messages are handled
again (never lost).
"""

from __future__ import annotations

import os
import sqlite3
import time

from ..errors import StoreError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS processed (
    consumer TEXT NOT NULL,
    message_id TEXT NOT NULL,
    global_position INTEGER NOT NULL,
    processed_at INTEGER NOT NULL,
    PRIMARY KEY (consumer, message_id)
) WITHOUT ROWID
"""


class Ledger:
    def __init__(self, path: str, consumer: str):
        self.path = path
        self.consumer = consumer
        parent = os.path.dirname(os.path.abspath(path))
        os.makedirs(parent, exist_ok=True)
        try:
            self.conn = sqlite3.connect(path, isolation_level=None, timeout=60)
            self.conn.execute("PRAGMA busy_timeout = 60000")
            self.conn.execute("PRAGMA journal_mode = WAL")
            self.conn.execute("PRAGMA synchronous = NORMAL")
            self.conn.execute(_SCHEMA)
        except sqlite3.DatabaseError as e:
            raise StoreError(f"idempotency ledger {path} is not usable: {e}") from None

    def seen(self, message_id: str) -> bool:
        return self.conn.execute(
            "SELECT 1 FROM processed WHERE consumer = ? AND message_id = ?",
            (self.consumer, message_id),
        ).fetchone() is not None

    def seen_many(self, message_ids: list[str]) -> set[str]:
        """The ids of ``message_ids`` already recorded (one query per 500 ids)."""
        out: set[str] = set()
        for i in range(0, len(message_ids), 500):
            chunk = message_ids[i:i + 500]
            marks = ",".join("?" * len(chunk))
            out.update(r[0] for r in self.conn.execute(
                f"SELECT message_id FROM processed WHERE consumer = ? AND message_id IN ({marks})",
                (self.consumer, *chunk)))
        return out

    def record(self, message_id: str, global_position: int) -> None:
        """Commit one handled id (its own transaction)."""
        self.conn.execute(
            "INSERT OR IGNORE INTO processed (consumer, message_id, global_position, processed_at)"
            " VALUES (?, ?, ?, ?)",
            (self.consumer, message_id, global_position, time.time_ns()),
        )

    def count(self) -> int:
        return self.conn.execute("SELECT count(*) FROM processed WHERE consumer = ?",
                                 (self.consumer,)).fetchone()[0]

    def close(self) -> None:
        self.conn.close()
