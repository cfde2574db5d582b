"""SQLite persistence: every piece of host state lives in DIR/durable.sqlite so a killed host can resume."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS instances (
    instance_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    status TEXT NOT NULL,
    input TEXT,
    output TEXT,
    custom_status TEXT,
    created_time TEXT NOT NULL,
    last_updated_time TEXT NOT NULL,
    parent_instance_id TEXT,
    parent_execution_id TEXT,
    parent_task_id INTEGER,
    execution_id TEXT NOT NULL,
    next_event_id INTEGER NOT NULL DEFAULT 0,
    actions_seen INTEGER NOT NULL DEFAULT 0,
    waiting TEXT NOT NULL DEFAULT '{}',
    version TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS history (
    instance_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    event TEXT NOT NULL,
    PRIMARY KEY (instance_id, seq)
);
-- Completions and raised events waiting to be delivered, one per episode, oldest first.
-- execution_id is NULL for raised events: they survive ContinueAsNew.
CREATE TABLE IF NOT EXISTS inbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    instance_id TEXT NOT NULL,
    execution_id TEXT,
    event TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS inbox_by_instance ON inbox (instance_id, id);
-- Activities scheduled and not yet completed: re-dispatched after a restart (at-least-once).
CREATE TABLE IF NOT EXISTS activities (
    instance_id TEXT NOT NULL,
    execution_id TEXT NOT NULL,
    task_id INTEGER NOT NULL,
    name TEXT NOT NULL,
    input TEXT,
    PRIMARY KEY (instance_id, execution_id, task_id)
);
CREATE TABLE IF NOT EXISTS timers (
    instance_id TEXT NOT NULL,
    execution_id TEXT NOT NULL,
    timer_id INTEGER NOT NULL,
    fire_at TEXT NOT NULL,
    action_index INTEGER,
    PRIMARY KEY (instance_id, execution_id, timer_id)
);
-- The Durable Task retry loop for *WithRetry actions, which the SDK leaves to the host.
CREATE TABLE IF NOT EXISTS retries (
    instance_id TEXT NOT NULL,
    execution_id TEXT NOT NULL,
    group_id INTEGER NOT NULL,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    input TEXT,
    child_id TEXT,
    options TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    task_id INTEGER,
    timer_id INTEGER,
    PRIMARY KEY (instance_id, execution_id, group_id)
);
CREATE TABLE IF NOT EXISTS blob_receipts (
    function TEXT NOT NULL,
    blob TEXT NOT NULL,
    etag TEXT NOT NULL,
    delivered_at TEXT NOT NULL,
    PRIMARY KEY (function, blob, etag)
);
"""


class Store:
    """One connection shared by all host threads; a lock serialises access (plenty for a dev host)."""

    def __init__(self, state_dir: Path) -> None:
        state_dir.mkdir(parents=True, exist_ok=True)
        self.path = state_dir / "durable.sqlite"
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.executescript(SCHEMA)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def query(self, sql: str, params: tuple | list = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    def close(self) -> None:
        with self._lock:
            self._conn.close()
