"""The persistent baseline: one row per watched file, in SQLite in the agent's state directory.

A row is what the agent last knew of a file: its identity (inode, device), its metadata and, for a
regular file up to the hash limit, the sha256 of its content. Rows are written by scans and by live
events (so a later scan has nothing to re-report). `roots` remembers which paths and directories
the rules watched when the baseline was written: a file that appears under a root the baseline
did not cover is new to the baseline, not a file created while the agent was away.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from dataclasses import astuple, dataclass
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    path BLOB PRIMARY KEY,
    ino INTEGER NOT NULL, dev INTEGER NOT NULL, size INTEGER NOT NULL, mode INTEGER NOT NULL,
    uid INTEGER NOT NULL, gid INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, ctime_ns INTEGER NOT NULL,
    sha256 TEXT,                 -- NULL: not a regular file, or larger than the hash limit
    seen INTEGER NOT NULL DEFAULT 0  -- the scan that last found it (finds what a scan did not see)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS roots (root BLOB NOT NULL, kind TEXT NOT NULL, PRIMARY KEY (root, kind));
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""
FILE_NAME = "baseline.sqlite"


@dataclass(frozen=True, slots=True)
class Entry:
    """A file's state as the baseline keeps it."""

    ino: int
    dev: int
    size: int
    mode: int  # st_mode, file type bits included
    uid: int
    gid: int
    mtime_ns: int
    ctime_ns: int
    sha256: str | None = None

    @classmethod
    def from_stat(cls, st: os.stat_result, sha256: str | None = None) -> Entry:
        return cls(
            st.st_ino, st.st_dev, st.st_size, st.st_mode, st.st_uid, st.st_gid,
            st.st_mtime_ns, st.st_ctime_ns, sha256,
        )  # fmt: skip

    def same_inode_state(self, other: Entry) -> bool:
        """Nothing about the inode changed: ctime moves on every content, mode or owner change and
        cannot be set from user space, so equal ctimes mean the content need not be read again."""
        return astuple(self)[:8] == astuple(other)[:8]


class BaselineStore:
    """Used from one thread (the scan service's). Paths are stored as their exact bytes."""

    def __init__(self, state_dir: str | Path) -> None:
        directory = Path(state_dir)
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.path = directory / FILE_NAME
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)  # root-only from the start
        os.close(fd)
        self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)

    def close(self) -> None:
        self.db.close()

    # -- rows -------------------------------------------------------------------------------------
    def get(self, path: str) -> Entry | None:
        row = self.db.execute("SELECT * FROM files WHERE path = ?", (os.fsencode(path),)).fetchone()
        return None if row is None else Entry(*row[1:10])

    def put(self, path: str, entry: Entry, seen: int = 0) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO files VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (os.fsencode(path), *astuple(entry), seen),
        )

    def mark_seen(self, path: str, seen: int) -> None:
        self.db.execute("UPDATE files SET seen = ? WHERE path = ?", (seen, os.fsencode(path)))

    def delete(self, path: str) -> None:
        self.db.execute("DELETE FROM files WHERE path = ?", (os.fsencode(path),))

    def not_seen(self, seen: int, batch: int = 512) -> Iterator[tuple[str, Entry]]:
        """Rows the scan `seen` did not find, in batches (bounded memory, safe to delete while
        iterating: each batch is fetched before the caller acts on it)."""
        after = b""
        while True:
            rows = self.db.execute(
                "SELECT * FROM files WHERE seen != ? AND path > ? ORDER BY path LIMIT ?", (seen, after, batch)
            ).fetchall()
            if not rows:
                return
            for row in rows:
                yield os.fsdecode(row[0]), Entry(*row[1:10])
            after = rows[-1][0]

    def count(self) -> int:
        return self.db.execute("SELECT count(*) FROM files").fetchone()[0]

    # -- roots and meta ---------------------------------------------------------------------------
    def roots(self) -> set[tuple[str, str]]:
        return {(os.fsdecode(r), k) for r, k in self.db.execute("SELECT root, kind FROM roots")}

    def set_roots(self, roots: set[tuple[str, str]]) -> None:
        with self.db:
            self.db.execute("BEGIN")
            self.db.execute("DELETE FROM roots")
            self.db.executemany("INSERT INTO roots VALUES (?, ?)", [(os.fsencode(r), k) for r, k in roots])

    def meta(self, key: str) -> int | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def set_meta(self, key: str, value: int) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def begin(self) -> None:
        self.db.execute("BEGIN")

    def commit(self) -> None:
        if self.db.in_transaction:
            self.db.execute("COMMIT")
