# -*- test-case-name: tests.test_host -*-
"""
The storage behind the reference host: KV namespaces, D1 databases, R2
buckets and queues, all in SQLite.

Everything here is synchronous and runs on the reactor thread: each command
is one or a few small SQLite statements (microseconds in memory, a
millisecond or so on a file), which is fine for a development and test host.
User SQL sent through C{d1.query} is the one thing that can be slow, so it
runs under a time limit (D1 has one too).

The values handed in here are already validated by the dispatcher
(L{containerflare.command._host_dispatch}); this module only stores them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import sqlite3
import time
import uuid
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any, Protocol

# Stored alongside the data: bump when the layout changes.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (
    binding TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    metadata TEXT,
    expiration INTEGER,
    PRIMARY KEY (binding, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS r2 (
    binding TEXT NOT NULL,
    key TEXT NOT NULL,
    body BLOB NOT NULL,
    etag TEXT NOT NULL,
    uploaded TEXT NOT NULL,
    content_type TEXT,
    custom_metadata TEXT NOT NULL,
    PRIMARY KEY (binding, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS queue (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    binding TEXT NOT NULL,
    id TEXT NOT NULL,
    body TEXT NOT NULL,
    timestamp TEXT NOT NULL,
    visible_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS queue_by_binding ON queue (binding, visible_at, seq);
"""


class _Clock(Protocol):
    def seconds(self) -> float: ...


class _WallClock:
    def seconds(self) -> float:
        return time.time()


class D1Error(Exception):
    """
    SQLite refused a D1 statement; the message is the diagnostic.
    """


class BadCursor(Exception):
    """
    A list cursor that this host did not hand out.
    """


def iso_timestamp(seconds: float) -> str:
    """
    C{seconds} since the epoch as JavaScript's C{Date.toISOString()} writes it.
    """
    moment = datetime.fromtimestamp(seconds, timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _encode_cursor(kind: str, after: str) -> str:
    raw = json.dumps([kind, after], ensure_ascii=False).encode("utf-8")
    return base64.urlsafe_b64encode(raw).decode("ascii")


def _decode_cursor(kind: str, cursor: str) -> str:
    try:
        decoded = json.loads(base64.urlsafe_b64decode(cursor.encode("ascii")).decode("utf-8"))
    except (ValueError, UnicodeError, binascii.Error) as e:
        raise BadCursor(f"cursor {cursor[:40]!r} was not issued by this host") from e
    if (
        not isinstance(decoded, list)
        or len(decoded) != 2
        or decoded[0] != kind
        or not isinstance(decoded[1], str)
    ):
        raise BadCursor(f"cursor {cursor[:40]!r} was not issued by this host for {kind}")
    return decoded[1]


def _prefix_clause(prefix: str | None) -> tuple[str, list[Any]]:
    # substr() counts characters, like len() on a Python str.
    if not prefix:
        return "", []
    return " AND substr(key, 1, ?) = ?", [len(prefix), prefix]


def _d1_value(value: Any) -> Any:
    """
    A SQLite column value as D1 puts it in JSON.
    """
    if isinstance(value, bytes):
        return list(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            # JSON.stringify turns non-finite numbers into null.
            return None
        if value.is_integer() and abs(value) < 1e21:
            # ... and writes 3.0 as 3 (up to 1e21, then as 1e+21).
            return int(value)
    return value


class HostStore:
    """
    KV, D1, R2 and queue storage for the reference host.

    @ivar path: the SQLite file holding KV, R2 and queues, or C{None} for
        memory. Each D1 binding is its own database: C{PATH.d1.NAME.sqlite}
        next to it, or another in-memory database.
    """

    def __init__(
        self,
        path: str | None = None,
        *,
        clock: _Clock | None = None,
        d1_time_limit: float = 10.0,
    ) -> None:
        """
        @param path: a SQLite file, or C{None} to keep everything in memory.
        @param clock: provides C{seconds()} (a reactor, or L{task.Clock} in
            tests); the wall clock by default.
        @param d1_time_limit: seconds a single D1 statement may run.
        """
        self.path = path
        self._clock: _Clock = clock if clock is not None else _WallClock()
        self._d1_time_limit = d1_time_limit
        self._db = sqlite3.connect(path or ":memory:", isolation_level=None, check_same_thread=False)
        self._db.executescript(_SCHEMA)
        self._d1: dict[str, _D1Database] = {}

    def close(self) -> None:
        """
        Close every database.
        """
        for d1 in self._d1.values():
            d1.close()
        self._d1.clear()
        self._db.close()

    def _now(self) -> float:
        return self._clock.seconds()

    # KV

    def kv_get(self, binding: str, key: str) -> tuple[str | None, Any]:
        """
        @return: (value, metadata) of a live key, or (C{None}, C{None}).
        """
        row = self._db.execute(
            "SELECT value, metadata, expiration FROM kv WHERE binding = ? AND key = ?",
            (binding, key),
        ).fetchone()
        if row is None:
            return None, None
        value, metadata, expiration = row
        if expiration is not None and expiration <= self._now():
            self._db.execute("DELETE FROM kv WHERE binding = ? AND key = ?", (binding, key))
            return None, None
        return value, (json.loads(metadata) if metadata is not None else None)

    def kv_put(
        self,
        binding: str,
        key: str,
        value: str,
        *,
        expiration_ttl: int | None = None,
        metadata: Any = None,
    ) -> None:
        expiration = None
        if expiration_ttl is not None:
            expiration = int(self._now()) + expiration_ttl
        encoded = None if metadata is None else json.dumps(metadata, ensure_ascii=False)
        self._db.execute(
            "INSERT OR REPLACE INTO kv (binding, key, value, metadata, expiration) VALUES (?, ?, ?, ?, ?)",
            (binding, key, value, encoded, expiration),
        )

    def kv_delete(self, binding: str, key: str) -> None:
        self._db.execute("DELETE FROM kv WHERE binding = ? AND key = ?", (binding, key))

    def kv_list(
        self,
        binding: str,
        *,
        prefix: str | None = None,
        limit: int = 1000,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        """
        @raise BadCursor: for a cursor this host did not hand out.
        """
        now = self._now()
        self._db.execute(
            "DELETE FROM kv WHERE binding = ? AND expiration IS NOT NULL AND expiration <= ?",
            (binding, now),
        )
        after = _decode_cursor("kv", cursor) if cursor else None
        clause, args = _prefix_clause(prefix)
        if after is not None:
            clause += " AND key > ?"
            args.append(after)
        rows = self._db.execute(
            "SELECT key, metadata, expiration FROM kv WHERE binding = ?"
            + clause
            + " ORDER BY key LIMIT ?",
            [binding, *args, limit + 1],
        ).fetchall()
        complete = len(rows) <= limit
        rows = rows[:limit]
        keys = [
            {
                "name": key,
                "expiration": expiration,
                "metadata": json.loads(metadata) if metadata is not None else None,
            }
            for key, metadata, expiration in rows
        ]
        return {
            "keys": keys,
            "list_complete": complete,
            "cursor": None if complete else _encode_cursor("kv", rows[-1][0]),
        }

    # R2

    def _r2_describe(self, row: Sequence[Any]) -> dict[str, Any]:
        key, size, etag, uploaded, content_type, custom = row
        return {
            "key": key,
            "size": size,
            "etag": etag,
            "uploaded": uploaded,
            "content_type": content_type,
            "custom_metadata": json.loads(custom),
        }

    _R2_COLUMNS = "key, length(body), etag, uploaded, content_type, custom_metadata"

    def r2_put(
        self,
        binding: str,
        key: str,
        body: bytes,
        *,
        content_type: str | None = None,
        custom_metadata: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """
        @return: the object description (no body).
        """
        etag = hashlib.md5(body, usedforsecurity=False).hexdigest()
        uploaded = iso_timestamp(self._now())
        custom = json.dumps(custom_metadata or {}, ensure_ascii=False)
        self._db.execute(
            "INSERT OR REPLACE INTO r2 (binding, key, body, etag, uploaded, content_type, custom_metadata)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (binding, key, body, etag, uploaded, content_type, custom),
        )
        return self._r2_describe((key, len(body), etag, uploaded, content_type, custom))

    def r2_get(self, binding: str, key: str) -> dict[str, Any] | None:
        """
        @return: the object description plus C{body_base64}, or C{None}.
        """
        row = self._db.execute(
            f"SELECT {self._R2_COLUMNS}, body FROM r2 WHERE binding = ? AND key = ?",
            (binding, key),
        ).fetchone()
        if row is None:
            return None
        described = self._r2_describe(row[:-1])
        described["body_base64"] = base64.b64encode(row[-1]).decode("ascii")
        return described

    def r2_delete(self, binding: str, keys: Sequence[str]) -> None:
        self._db.executemany(
            "DELETE FROM r2 WHERE binding = ? AND key = ?", [(binding, key) for key in keys]
        )

    def r2_list(
        self,
        binding: str,
        *,
        prefix: str | None = None,
        limit: int = 1000,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        """
        @raise BadCursor: for a cursor this host did not hand out.
        """
        after = _decode_cursor("r2", cursor) if cursor else None
        clause, args = _prefix_clause(prefix)
        if after is not None:
            clause += " AND key > ?"
            args.append(after)
        rows = self._db.execute(
            f"SELECT {self._R2_COLUMNS} FROM r2 WHERE binding = ?" + clause + " ORDER BY key LIMIT ?",
            [binding, *args, limit + 1],
        ).fetchall()
        truncated = len(rows) > limit
        rows = rows[:limit]
        return {
            "objects": [self._r2_describe(row) for row in rows],
            "truncated": truncated,
            "cursor": _encode_cursor("r2", rows[-1][0]) if truncated else None,
        }

    # Queues

    def queue_send(self, binding: str, messages: Sequence[tuple[Any, int]]) -> None:
        """
        Enqueue (body, delay_seconds) pairs, all or nothing.
        """
        now = self._now()
        stamp = iso_timestamp(now)
        rows = [
            (binding, uuid.uuid4().hex, json.dumps(body, ensure_ascii=False), stamp, now + delay)
            for body, delay in messages
        ]
        with _transaction(self._db):
            self._db.executemany(
                "INSERT INTO queue (binding, id, body, timestamp, visible_at) VALUES (?, ?, ?, ?, ?)",
                rows,
            )

    def queue_pull(self, binding: str, limit: int = 100) -> list[dict[str, Any]]:
        """
        Remove and return up to C{limit} messages whose delay has passed,
        oldest first.
        """
        with _transaction(self._db):
            rows = self._db.execute(
                "SELECT seq, id, body, timestamp FROM queue WHERE binding = ? AND visible_at <= ?"
                " ORDER BY seq LIMIT ?",
                (binding, self._now(), limit),
            ).fetchall()
            self._db.executemany("DELETE FROM queue WHERE seq = ?", [(row[0],) for row in rows])
        return [
            {"id": id_, "body": json.loads(body), "timestamp": stamp, "attempts": 1}
            for _, id_, body, stamp in rows
        ]

    # D1

    def d1(self, binding: str) -> _D1Database:
        """
        The D1 database called C{binding}, created on first use.
        """
        database = self._d1.get(binding)
        if database is None:
            path = f"{self.path}.d1.{binding}.sqlite" if self.path else ":memory:"
            database = self._d1[binding] = _D1Database(path, self._d1_time_limit)
        return database


class _transaction:
    """
    BEGIN ... COMMIT, or ROLLBACK when the block raises.
    """

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN")

    def __exit__(self, kind: object, value: object, tb: object) -> None:
        self._db.execute("ROLLBACK" if kind is not None else "COMMIT")


class _D1Database:
    """
    One D1 binding: a real SQLite database, autocommit, with D1's limits:
    no ATTACH/DETACH and no explicit transactions (L{batch} makes its own).
    """

    def __init__(self, path: str, time_limit: float) -> None:
        # No statement cache: the authorizer runs when a statement is
        # prepared, so a cached BEGIN of ours must not be reusable by users.
        self._db = sqlite3.connect(
            path, isolation_level=None, check_same_thread=False, cached_statements=0
        )
        self._time_limit = time_limit
        self._deadline = math.inf
        self._internal = False
        self._denied: str | None = None
        self._db.set_authorizer(self._authorize)
        self._db.set_progress_handler(self._past_deadline, 10_000)

    def close(self) -> None:
        self._db.close()

    def _authorize(self, action: int, arg1: Any, arg2: Any, dbname: Any, source: Any) -> int:
        if action in (sqlite3.SQLITE_ATTACH, sqlite3.SQLITE_DETACH):
            self._denied = "ATTACH and DETACH are not supported by D1"
            return sqlite3.SQLITE_DENY
        if action in (sqlite3.SQLITE_TRANSACTION, sqlite3.SQLITE_SAVEPOINT) and not self._internal:
            self._denied = "explicit transactions are not supported by D1; use d1.batch"
            return sqlite3.SQLITE_DENY
        return sqlite3.SQLITE_OK

    def _past_deadline(self) -> int:
        return 1 if time.monotonic() > self._deadline else 0

    def _run(self, sql: str, params: Sequence[Any]) -> dict[str, Any]:
        before = self._db.total_changes
        self._denied = None
        self._deadline = time.monotonic() + self._time_limit
        try:
            cursor = self._db.execute(sql, params)
            rows = cursor.fetchall()
            columns = [c[0] for c in cursor.description] if cursor.description else []
            (last_row_id,) = self._db.execute("SELECT last_insert_rowid()").fetchone()
        except sqlite3.OperationalError as e:
            if str(e) == "interrupted":
                raise D1Error(f"statement ran longer than {self._time_limit:g} s") from e
            raise D1Error(self._denied or str(e)) from e
        except (sqlite3.Error, OverflowError, ValueError) as e:
            raise D1Error(self._denied or str(e)) from e
        finally:
            self._deadline = math.inf
        return {
            "results": [
                {column: _d1_value(value) for column, value in zip(columns, row)} for row in rows
            ],
            "meta": {"changes": self._db.total_changes - before, "last_row_id": last_row_id},
        }

    def query(self, sql: str, params: Sequence[Any]) -> dict[str, Any]:
        """
        Run one statement.

        @raise D1Error: when SQLite refuses it.
        """
        return self._run(sql, params)

    def batch(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> list[dict[str, Any]]:
        """
        Run statements in one transaction: all take effect or none.

        @raise D1Error: when SQLite refuses one of them (nothing is kept).
        """
        self._control("BEGIN")
        try:
            results = [self._run(sql, params) for sql, params in statements]
        except BaseException:
            self._control("ROLLBACK")
            raise
        self._control("COMMIT")
        return results

    def _control(self, sql: str) -> None:
        # Only our own transaction statements get past the authorizer.
        self._internal = True
        try:
            self._db.execute(sql)
        finally:
            self._internal = False
