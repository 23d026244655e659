"""A durable, bounded FIFO of log records waiting for delivery: SQLite in WAL mode.

`put()` commits before it returns, so a record handed to the OTLP output survives the process being
killed; a record leaves only through `ack()`, after the receiver accepted it. When the spool is full
the least severe record goes first (oldest first within a severity): a flood of low-severity noise
cannot push a critical detection out, and every record given up is counted and reported through
`on_drop`, never silently.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

SPOOL_FILE = "spool.db"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    -- AUTOINCREMENT: an id is never reused, so a late ack cannot delete a newer row
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    severity INTEGER NOT NULL,
    observed_ns INTEGER NOT NULL,
    size INTEGER NOT NULL,
    payload TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS records_eviction ON records (severity, id);
-- Records the receiver refused for good (poison records): kept for inspection and requeueing.
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    severity INTEGER NOT NULL,
    observed_ns INTEGER NOT NULL,
    failed_ns INTEGER NOT NULL,
    reason TEXT NOT NULL,
    size INTEGER NOT NULL,
    payload TEXT NOT NULL
);
"""
# Spools written before write-ahead records existed lack the column; added in place.
_PENDING_COLUMN = "ALTER TABLE records ADD COLUMN pending INTEGER NOT NULL DEFAULT 0"


@dataclass(frozen=True, slots=True)
class SpooledRecord:
    id: int
    severity: int
    observed_ns: int
    payload: str


@dataclass(frozen=True, slots=True)
class DeadLetter:
    id: int
    severity: int
    observed_ns: int
    failed_ns: int
    reason: str
    payload: str


# Called with the records evicted to make room (already deleted when it runs).
DropCallback = Callable[[Sequence[SpooledRecord]], None]


class SpoolError(OSError):
    pass


class Spool:
    """Thread-safe: the pipeline thread calls `put`, the sender thread `peek`/`ack`.

    `path=None` keeps the spool in memory: bounded and retried, but lost on restart.
    `synchronous="FULL"` also survives power loss (an fsync per record); the default `NORMAL` survives
    the process being killed, which is what WAL guarantees without an fsync per commit.
    """

    def __init__(
        self,
        path: str | Path | None,
        *,
        max_records: int = 100_000,
        max_bytes: int = 128 * 1024 * 1024,
        synchronous: str = "NORMAL",
        on_drop: DropCallback | None = None,
        max_dead_letters: int = 10_000,
        on_dead_letter_drop: DropCallback | None = None,
    ) -> None:
        if max_records < 1 or max_bytes < 1:
            raise SpoolError("spool bounds must be positive")
        if synchronous.upper() not in ("NORMAL", "FULL"):
            raise SpoolError(f"spool synchronous must be NORMAL or FULL, not {synchronous!r}")
        self.path = Path(path) if path is not None else None
        self.max_records = max_records
        self.max_bytes = max_bytes
        self.max_dead_letters = max_dead_letters
        self._on_drop = on_drop
        self._on_dead_letter_drop = on_dead_letter_drop
        self._lock = threading.Lock()
        self._not_empty = threading.Condition(self._lock)
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(
                str(self.path) if self.path else ":memory:",
                check_same_thread=False,
                isolation_level=None,  # explicit BEGIN/COMMIT below
            )
            if self.path is not None:
                self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={synchronous.upper()}")
            self._db.executescript(_SCHEMA)
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(records)")}
            if "pending" not in columns:
                self._db.execute(_PENDING_COLUMN)
            count, size = self._db.execute("SELECT count(*), coalesce(sum(size), 0) FROM records").fetchone()
            (dead,) = self._db.execute("SELECT count(*) FROM dead_letters").fetchone()
        except sqlite3.Error as exc:
            raise SpoolError(f"cannot open spool {self.path}: {exc}") from exc
        self._count: int = count
        self._bytes: int = size
        self._dead: int = dead
        self.dropped_total = 0
        self.dead_letter_dropped = 0
        self._closed = False

    # -- pipeline side ---------------------------------------------------------------------------

    def put(self, payload: str, *, severity: int, observed_ns: int) -> int:
        """Store one record durably; returns how many records were evicted to make room."""
        return self._insert([(payload, severity, observed_ns)], pending=False)[1]

    def put_pending(self, records: Sequence[tuple[str, int, int]]) -> list[int]:
        """Store records that are not ready to send (write-ahead: plugins still enrich them), given
        as (payload, severity, observed_ns), in one transaction; returns their ids for `complete`.
        `release` makes them sendable if `complete` never comes."""
        return self._insert(records, pending=True)[0]

    def _insert(self, records: Sequence[tuple[str, int, int]], *, pending: bool) -> tuple[list[int], int]:
        with self._lock:
            if self._closed:
                raise SpoolError("spool is closed")
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row_ids = []
                for payload, severity, observed_ns in records:
                    size = len(payload.encode("utf-8", "surrogatepass"))
                    row_id = self._db.execute(
                        "INSERT INTO records (severity, observed_ns, size, payload, pending)"
                        " VALUES (?, ?, ?, ?, ?)",
                        (severity, observed_ns, size, payload, int(pending)),
                    ).lastrowid
                    row_ids.append(int(row_id or 0))
                    self._count += 1
                    self._bytes += size
                dropped = self._evict_over_bound()
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                self._reload_totals()
                raise
            self._not_empty.notify_all()
        if dropped:
            self.dropped_total += len(dropped)
            if self._on_drop is not None:
                self._on_drop(dropped)
        return row_ids, len(dropped)

    def complete(self, row_id: int, payload: str) -> bool:
        """Replace a pending record by its final form and make it sendable; False if it is gone
        (evicted to make room, already counted as dropped)."""
        size = len(payload.encode("utf-8", "surrogatepass"))
        with self._lock:
            if self._closed:
                raise SpoolError("spool is closed")
            self._db.execute("BEGIN IMMEDIATE")
            try:
                old = self._db.execute(
                    "SELECT size FROM records WHERE id = ? AND pending = 1", (row_id,)
                ).fetchone()
                if old is not None:
                    self._db.execute(
                        "UPDATE records SET payload = ?, size = ?, pending = 0 WHERE id = ?",
                        (payload, size, row_id),
                    )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            if old is None:
                return False
            self._bytes += size - old[0]
            self._not_empty.notify_all()
            return True

    def release(self, ids: Sequence[int]) -> None:
        """Make pending records sendable as they are (their enrichment will not come)."""
        if not ids:
            return
        with self._lock:
            if self._closed:
                return
            placeholders = ",".join("?" * len(ids))
            self._db.execute(f"UPDATE records SET pending = 0 WHERE id IN ({placeholders})", list(ids))
            self._not_empty.notify_all()

    def pending(self, older_than_ns: int | None = None) -> list[SpooledRecord]:
        """Pending records (all, or those spooled before `older_than_ns`), oldest first."""
        limit = older_than_ns if older_than_ns is not None else 2**63 - 1
        with self._lock:
            if self._closed:
                return []
            rows = self._db.execute(
                "SELECT id, severity, observed_ns, payload FROM records WHERE pending = 1 AND observed_ns < ?"
                " ORDER BY id",
                (limit,),
            ).fetchall()
        return [SpooledRecord(*row) for row in rows]

    def _evict_over_bound(self) -> list[SpooledRecord]:
        dropped: list[SpooledRecord] = []
        while self._count > self.max_records or (self._bytes > self.max_bytes and self._count > 0):
            # Evict in chunks sized to what is needed by count; loop again if bytes still exceed.
            need = max(1, self._count - self.max_records)
            rows = self._db.execute(
                "SELECT id, severity, observed_ns, size, payload FROM records ORDER BY severity, id LIMIT ?",
                (need,),
            ).fetchall()
            self._db.executemany("DELETE FROM records WHERE id = ?", [(r[0],) for r in rows])
            for row_id, severity, observed_ns, size, payload in rows:
                self._count -= 1
                self._bytes -= size
                dropped.append(SpooledRecord(row_id, severity, observed_ns, payload))
        return dropped

    def _reload_totals(self) -> None:
        self._count, self._bytes = self._db.execute(
            "SELECT count(*), coalesce(sum(size), 0) FROM records"
        ).fetchone()
        (self._dead,) = self._db.execute("SELECT count(*) FROM dead_letters").fetchone()

    # -- sender side -----------------------------------------------------------------------------

    def peek(self, limit: int) -> list[SpooledRecord]:
        """The oldest `limit` records, without removing them."""
        with self._lock:
            if self._closed:
                return []
            rows = self._db.execute(
                "SELECT id, severity, observed_ns, payload FROM records"
                " WHERE pending = 0 ORDER BY id LIMIT ?",
                (limit,),
            ).fetchall()
        return [SpooledRecord(*row) for row in rows]

    def ack(self, ids: Sequence[int]) -> None:
        """The receiver accepted these records: forget them. Ids already evicted are ignored."""
        if not ids:
            return
        with self._lock:
            if self._closed:
                return
            self._db.execute("BEGIN IMMEDIATE")
            try:
                placeholders = ",".join("?" * len(ids))
                size = self._db.execute(
                    f"SELECT count(*), coalesce(sum(size), 0) FROM records WHERE id IN ({placeholders})", ids
                ).fetchone()
                self._db.execute(f"DELETE FROM records WHERE id IN ({placeholders})", ids)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._count -= size[0]
            self._bytes -= size[1]
            if self._count == 0:
                self._not_empty.notify_all()  # wakes `wait_empty`

    def dead_letter(self, rows: Sequence[SpooledRecord], reason: str, failed_ns: int) -> int:
        """Move records the receiver refused for good into the dead-letter table (one transaction);
        returns how many moved. Over `max_dead_letters` the oldest dead letters are given up."""
        if not rows:
            return 0
        ids = [r.id for r in rows]
        with self._lock:
            if self._closed:
                return 0
            self._db.execute("BEGIN IMMEDIATE")
            try:
                placeholders = ",".join("?" * len(ids))
                found = self._db.execute(
                    "SELECT id, severity, observed_ns, size, payload FROM records"
                    f" WHERE id IN ({placeholders})",
                    ids,
                ).fetchall()
                self._db.executemany(
                    "INSERT INTO dead_letters (severity, observed_ns, failed_ns, reason, size, payload)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    [(sev, obs, failed_ns, reason, size, payload) for _, sev, obs, size, payload in found],
                )
                self._db.execute(f"DELETE FROM records WHERE id IN ({placeholders})", ids)
                self._dead += len(found)
                given_up = self._evict_dead_letters()
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                self._reload_totals()
                raise
            self._count -= len(found)
            self._bytes -= sum(r[3] for r in found)
            if self._count == 0:
                self._not_empty.notify_all()
        if given_up:
            self.dead_letter_dropped += len(given_up)
            if self._on_dead_letter_drop is not None:
                self._on_dead_letter_drop(given_up)
        return len(found)

    def _evict_dead_letters(self) -> list[SpooledRecord]:
        over = self._dead - self.max_dead_letters
        if over <= 0:
            return []
        rows = self._db.execute(
            "SELECT id, severity, observed_ns, payload FROM dead_letters ORDER BY id LIMIT ?", (over,)
        ).fetchall()
        self._db.executemany("DELETE FROM dead_letters WHERE id = ?", [(r[0],) for r in rows])
        self._dead -= len(rows)
        return [SpooledRecord(*row) for row in rows]

    def dead_letter_count(self) -> int:
        return self._dead

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        with self._lock:
            if self._closed:
                return []
            rows = self._db.execute(
                "SELECT id, severity, observed_ns, failed_ns, reason, payload FROM dead_letters"
                " ORDER BY id LIMIT ?",
                (limit,),
            ).fetchall()
        return [DeadLetter(*row) for row in rows]

    def requeue_dead_letters(self, ids: Sequence[int] | None = None) -> int:
        """Put dead letters (all, or these ids) back at the end of the queue; returns how many."""
        return self._take_dead_letters(ids, requeue=True)

    def purge_dead_letters(self, ids: Sequence[int] | None = None) -> int:
        """Forget dead letters (all, or these ids); returns how many."""
        return self._take_dead_letters(ids, requeue=False)

    def _take_dead_letters(self, ids: Sequence[int] | None, *, requeue: bool) -> int:
        where, params = ("", []) if ids is None else (f" WHERE id IN ({','.join('?' * len(ids))})", list(ids))
        with self._lock:
            if self._closed:
                raise SpoolError("spool is closed")
            self._db.execute("BEGIN IMMEDIATE")
            try:
                rows = self._db.execute(
                    f"SELECT severity, observed_ns, size, payload FROM dead_letters{where} ORDER BY id",
                    params,
                ).fetchall()
                if requeue:
                    self._db.executemany(
                        "INSERT INTO records (severity, observed_ns, size, payload) VALUES (?, ?, ?, ?)", rows
                    )
                self._db.execute(f"DELETE FROM dead_letters{where}", params)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._dead -= len(rows)
            if requeue:
                self._count += len(rows)
                self._bytes += sum(r[2] for r in rows)
                self._not_empty.notify_all()
        return len(rows)

    def wait_not_empty(self, timeout: float) -> bool:
        with self._lock:
            if self._count == 0 and not self._closed:
                self._not_empty.wait(timeout)
            return self._count > 0

    def wait_empty(self, timeout: float) -> bool:
        with self._lock:
            self._not_empty.wait_for(lambda: self._count == 0 or self._closed, timeout)
            return self._count == 0

    def wake(self) -> None:
        with self._lock:
            self._not_empty.notify_all()

    # -- both ------------------------------------------------------------------------------------

    def depth(self) -> int:
        return self._count

    def size_bytes(self) -> int:
        return self._bytes

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._not_empty.notify_all()
            self._db.close()
