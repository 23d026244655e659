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
"""


@dataclass(frozen=True, slots=True)
class SpooledRecord:
    id: int
    severity: int
    observed_ns: int
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
    ) -> None:
        if max_records < 1 or max_bytes < 1:
            raise SpoolError("spool bounds must be positive")
        if synchronous.upper() not in ("NORMAL", "FULL"):
            raise SpoolError(f"spool synchronous must be NORMAL or FULL, not {synchronous!r}")
        self.path = Path(path) if path is not None else None
        self.max_records = max_records
        self.max_bytes = max_bytes
        self._on_drop = on_drop
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
            count, size = self._db.execute("SELECT count(*), coalesce(sum(size), 0) FROM records").fetchone()
        except sqlite3.Error as exc:
            raise SpoolError(f"cannot open spool {self.path}: {exc}") from exc
        self._count: int = count
        self._bytes: int = size
        self.dropped_total = 0
        self._closed = False

    # -- pipeline side ---------------------------------------------------------------------------

    def put(self, payload: str, *, severity: int, observed_ns: int) -> int:
        """Store one record durably; returns how many records were evicted to make room."""
        size = len(payload.encode("utf-8", "surrogatepass"))
        with self._lock:
            if self._closed:
                raise SpoolError("spool is closed")
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute(
                    "INSERT INTO records (severity, observed_ns, size, payload) VALUES (?, ?, ?, ?)",
                    (severity, observed_ns, size, payload),
                )
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
        return len(dropped)

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

    # -- sender side -----------------------------------------------------------------------------

    def peek(self, limit: int) -> list[SpooledRecord]:
        """The oldest `limit` records, without removing them."""
        with self._lock:
            if self._closed:
                return []
            rows = self._db.execute(
                "SELECT id, severity, observed_ns, payload FROM records ORDER BY id LIMIT ?", (limit,)
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
