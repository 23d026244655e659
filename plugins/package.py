"""package: which Debian package owns the file, and whether the change looks like packaging.

Reads dpkg's database (`<admindir>/info/*.list`, `*.md5sums`, and the conffiles in `status`) once,
in the background at startup, and again when `status` changes (after every dpkg run); no `dpkg -S`
process per event. Paths are looked up as reported and under the merged-/usr alias (/bin/x is
/usr/bin/x).

Attributes (`otel_fim.plugin.package.*`), on matched events of files a package owns:
  name                the owning package(s), comma-separated (`diversion by` is not followed)
  conffile            true for configuration files (admins are expected to edit them)
  digest_match        after a write: whether the file's md5 still equals what the package shipped
                      (for a conffile: its shipped version; absent when unknown: no digest in
                      the database, file too large or gone)
  by_package_manager  the writer is dpkg/apt/... (or runs under one): packaging noise

`by_package_manager=false` with `digest_match=false` on a non-conffile is tampering with a
packaged file.

Rule fields: `package.name` (str: the owner(s), None if unowned or the database is not read yet)
and `package.by_manager` (bool: the process or an ancestor is a package manager).

Config (`plugins.config.package`):
  admindir: /var/lib/dpkg
  managers: [dpkg, apt, apt-get, aptitude, unattended-upgr, dpkg-deb, ...]  command names
  max_bytes: 67108864     larger files are not hashed for digest_match
  settle_seconds: 1.0
"""

from __future__ import annotations

import bisect
import ctypes
import ctypes.util
import hashlib
import logging
import os
import pickle
import subprocess
import sys
import threading
import time
from array import array
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from otel_fim.plugin_api import PluginField, content_path, hookimpl, is_write, wait_for_writer
from otel_fim.provenance import (
    DEFAULT_MANAGER_EXECUTABLES,
    VERIFIED,
    FreshDigests,
    Provenance,
)

log = logging.getLogger(__name__)

DEFAULT_MANAGERS = [
    "dpkg", "apt", "apt-get", "aptitude", "unattended-upgr", "unattended-upgrade", "dpkg-deb",
    "dpkg-divert", "dpkg-statoverri", "dpkg-trigger", "packagekitd", "apt-check",
]  # fmt: skip
DEFAULTS: dict[str, Any] = {
    "admindir": "/var/lib/dpkg",
    "managers": DEFAULT_MANAGERS,
    "max_bytes": 64 * 1024 * 1024,
    "settle_seconds": 1.0,
    # provenance (otel_fim.provenance): package managers by executable path, not name
    "manager_executables": DEFAULT_MANAGER_EXECUTABLES,
    "verify_max_bytes": 16 * 1024 * 1024,  # hashed on the consumer thread when a rule asks
}
_MERGED = ("/bin/", "/sbin/", "/lib/", "/lib32/", "/lib64/", "/libx32/")


def _path_hash(path: str) -> int:
    digest = hashlib.blake2b(path.encode("utf-8", "surrogateescape"), digest_size=8).digest()
    return int.from_bytes(digest, "little")


class PathTable:
    """A read-only `path -> value` mapping kept as sorted 64-bit path hashes, ~12-30 bytes a path
    instead of ~200 for a dict of str (dpkg knows ~10^5 paths: 57 MiB of the agent's memory as
    dicts). Two paths sharing a 64-bit hash (odds ~10^-9 for a whole Debian install) would share
    an answer; this is enrichment, never a filtering decision."""

    def __init__(self, items: Iterable[tuple[str, str]]) -> None:
        pairs = sorted((_path_hash(path), value) for path, value in items)
        self._hashes = array("Q", (h for h, _ in pairs))
        self._store([v for _, v in pairs])

    def parts(self) -> dict[str, Any]:
        """Plain values (bytes, lists, dicts) to send from the process that built the table."""
        return {k: v.tobytes() if isinstance(v, array) else v for k, v in vars(self).items()}

    @classmethod
    def from_parts(cls, parts: dict[str, Any]) -> PathTable:
        table = cls.__new__(cls)
        for name, value in parts.items():
            if name in ("_hashes", "_indexes"):
                restored = array("Q" if name == "_hashes" else "I")
                restored.frombytes(value)
                value = restored
            setattr(table, name, value)
        return table

    def _store(self, values: list[str]) -> None:
        distinct: dict[str, int] = {}
        self._indexes = array("I", (distinct.setdefault(v, len(distinct)) for v in values))
        self._values = list(distinct)

    def _value(self, i: int) -> str:
        return self._values[self._indexes[i]]

    def _find(self, path: str) -> int | None:
        h = _path_hash(path)
        i = bisect.bisect_left(self._hashes, h)
        return i if i < len(self._hashes) and self._hashes[i] == h else None

    def __len__(self) -> int:
        return len(self._hashes)

    def __contains__(self, path: object) -> bool:
        return isinstance(path, str) and self._find(path) is not None

    def __getitem__(self, path: str) -> str:
        i = self._find(path)
        if i is None:
            raise KeyError(path)
        return self._value(i)

    def get(self, path: str, default: str | None = None) -> str | None:
        i = self._find(path)
        return default if i is None else self._value(i)


class DigestTable(PathTable):
    """path -> md5 hex digest, the digests packed as 16 bytes each (all distinct: no sharing)."""

    def _store(self, values: list[str]) -> None:
        self._digests = bytearray()
        self._odd: dict[int, str] = {}  # a line that is not 32 hex digits, kept as written
        for i, v in enumerate(values):
            try:
                raw = bytes.fromhex(v)
            except ValueError:
                raw = b""
            if len(raw) != 16:
                self._odd[i] = v
                raw = bytes(16)
            self._digests += raw

    def _value(self, i: int) -> str:
        return self._odd.get(i) or self._digests[16 * i : 16 * i + 16].hex()


def _release_freed_heap() -> None:
    """The build's temporary dicts are freed; hand their pages back to the system."""
    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


class DpkgIndex:
    """path -> owners, md5, conffile flag; rebuilt when dpkg's status file changes."""

    def __init__(self, admindir: Path) -> None:
        self.admindir = admindir
        self.owners: PathTable = PathTable(())
        self.md5: PathTable = DigestTable(())
        self.conffiles: dict[str, str] = {}
        self.ready = threading.Event()
        self.built_ns = 0  # when the last build started (md5sums newer than this are re-read)
        self._status_mtime: int | None = None
        self._checked = 0.0
        self._lock = threading.Lock()

    def build(self) -> None:
        """Read the database in a child process when possible: parsing makes ~250,000 short-lived
        strings whose freed memory would stay with the agent (fragmented heap)."""
        started_ns = time.time_ns()
        tables = _tables_from_child(self.admindir)
        if tables is None:
            self._build_here(started_ns)
            return
        try:
            mtime = (self.admindir / "status").stat().st_mtime_ns
        except OSError:
            mtime = None
        self.owners, self.md5 = tables
        self.conffiles = _conffiles(self.admindir / "status")
        self._status_mtime = mtime
        self.built_ns = started_ns
        self.ready.set()

    def _build_here(self, started_ns: int) -> None:
        info = self.admindir / "info"
        try:
            mtime = (self.admindir / "status").stat().st_mtime_ns
        except OSError:
            mtime = None
        owners: dict[str, list[str]] = {}
        md5: dict[str, str] = {}
        try:
            entries = sorted(os.listdir(info))
        except OSError:
            entries = []
        for entry in entries:
            if entry.endswith(".list"):
                pkg = entry[:-5]
                for line in _lines(info / entry):
                    owners.setdefault(line, []).append(pkg)
            elif entry.endswith(".md5sums"):
                for line in _lines(info / entry):
                    digest, _, rel = line.partition("  ")
                    if rel:
                        md5["/" + rel] = digest
        self.owners = PathTable((p, ",".join(sorted(set(pkgs)))) for p, pkgs in owners.items())
        self.md5 = DigestTable(md5.items())
        del owners, md5
        self.conffiles = _conffiles(self.admindir / "status")
        self._status_mtime = mtime
        self.built_ns = started_ns
        self.ready.set()
        _release_freed_heap()

    def refresh(self) -> None:
        """Rebuild if dpkg ran since (checked at most once a second)."""
        now = time.monotonic()
        if now - self._checked < 1.0:
            return
        self._checked = now
        try:
            mtime = (self.admindir / "status").stat().st_mtime_ns
        except OSError:
            return
        if mtime != self._status_mtime:
            with self._lock:
                self.build()

    def key(self, path: str) -> str | None:
        """The path as dpkg knows it (itself or its merged-/usr twin), or None."""
        if path in self.owners:
            return path
        if path.startswith("/usr/") and path[4:].startswith(_MERGED):
            twin = path[4:]
        elif path.startswith(_MERGED):
            twin = "/usr" + path
        else:
            return None
        return twin if twin in self.owners else None


def _tables_from_child(admindir: Path) -> tuple[PathTable, PathTable] | None:
    """(owners, md5) built by `python package.py --dump-index ADMINDIR`; None if that failed."""
    try:
        done = subprocess.run(
            [sys.executable, __file__, "--dump-index", str(admindir)],
            capture_output=True,
            timeout=120,
            check=True,
        )
        owners, md5 = pickle.loads(done.stdout)  # our own child's output
        return PathTable.from_parts(owners), DigestTable.from_parts(md5)
    except (OSError, subprocess.SubprocessError, pickle.UnpicklingError, ValueError, EOFError) as exc:
        log.info("package: reading the dpkg database in a child failed (%s); reading it here", exc)
        return None


def _lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8", errors="surrogateescape").splitlines()
    except OSError:
        return []


def _conffiles(status: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    in_conffiles = False
    for line in _lines(status):
        if line.startswith("Conffiles:"):
            in_conffiles = True
        elif in_conffiles and line.startswith(" "):
            parts = line.split()
            if len(parts) >= 2:
                out[parts[0]] = parts[1]
        else:
            in_conffiles = False
    return out


_settings: dict[str, Any] = dict(DEFAULTS)
_index: DpkgIndex | None = None
_provenance: Provenance | None = None


@hookimpl
def otel_fim_startup(plugin_config):
    global _index
    unknown = set(plugin_config) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"unknown settings: {', '.join(sorted(unknown))} (known: {', '.join(DEFAULTS)})")
    _settings.clear()
    _settings.update(DEFAULTS, **plugin_config)
    _index = DpkgIndex(Path(_settings["admindir"]))
    index = _index
    digests = FreshDigests(
        index.admindir,
        lambda: index.md5 if index.ready.is_set() else {},
        lambda: index.built_ns,
        lambda: index.ready.wait(30),
    )
    global _provenance
    _provenance = Provenance(digests, list(_settings["manager_executables"]), _settings["verify_max_bytes"])
    if not (_index.admindir / "status").exists():
        log.info("package: no dpkg database at %s; nothing to report", _index.admindir)
        _index.ready.set()
        return
    threading.Thread(target=_index.build, name="otel-fim-dpkg-index", daemon=True).start()


def by_package_manager(event) -> bool:
    managers = set(_settings["managers"])
    p = event.process
    if p.comm in managers or (p.executable_name or "") in managers:
        return True
    return any(a.comm in managers or (a.executable_name or "") in managers for a in p.ancestors)


def _owner(event) -> str | None:
    index = _index
    if index is None or not index.ready.is_set():
        return None
    key = index.key(event.file.path)
    return index.owners.get(key) if key else None


def provenance(event) -> str | None:
    return _provenance.of(event)[0] if _provenance is not None else None


def verified(event) -> bool:
    return provenance(event) in VERIFIED


@hookimpl
def otel_fim_rule_fields():
    return [
        PluginField("package.name", "str", _owner, doc="the Debian package(s) owning the file"),
        PluginField("package.by_manager", "bool", by_package_manager, doc="written by dpkg/apt/..."),
        PluginField(
            "package.provenance", "str", provenance,
            doc="verified, mismatch, unpackaged, staging, unverifiable, untrusted_manager; None: no manager",
        ),
        PluginField(
            "package.verified", "bool", verified,
            doc="a package manager (by executable path) wrote the content its package ships",
        ),
    ]  # fmt: skip


def _provenance_attributes(event, path: str) -> dict[str, Any]:
    """The provenance, with the content verdict an open or truncate could not have at rule time
    (the writer is done by now)."""
    if _provenance is None:
        return {}
    value, manager = _provenance.of(event)
    if manager is None:
        return {}
    out: dict[str, Any] = {"manager": manager.executable, "manager_relation": manager.relation}
    if value == "unverifiable" and event.type.value in ("open", "truncate") and content_path(event):
        wait_for_writer(event, path, _settings["settle_seconds"])
        value = _provenance.verdict(path)
        out["verdict_after_write"] = True
    out["provenance"] = value
    return out


@hookimpl
def otel_fim_enrich(event, matches):
    index = _index
    path = content_path(event) or event.file.path
    if index is None:
        return None
    if event.container is not None:  # the host's dpkg database does not describe a container's files
        return {"status": "unavailable", "reason": "files in a container: the host's package database"}
    index.ready.wait(30)
    provenance_attrs = _provenance_attributes(event, path)
    index.refresh()
    key = index.key(path)
    if key is None:
        return provenance_attrs or None
    out: dict[str, Any] = {
        **provenance_attrs,
        "name": index.owners[key],
        "by_package_manager": by_package_manager(event),
    }
    conffile = index.conffiles.get(key)
    out["conffile"] = conffile is not None
    shipped = index.md5.get(key) or (conffile if conffile not in (None, "newconffile") else None)
    if shipped and is_write(event) and content_path(event) is not None:
        wait_for_writer(event, path, _settings["settle_seconds"])
        now = _md5(path, _settings["max_bytes"])
        if now is not None:
            out["digest_match"] = now == shipped
    return out


def _md5(path: str, max_bytes: int) -> str | None:
    try:
        if os.stat(path).st_size > max_bytes:
            return None
        digest = hashlib.md5(usedforsecurity=False)
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
        return digest.hexdigest()
    except OSError:
        return None


if __name__ == "__main__" and sys.argv[1:2] == ["--dump-index"]:
    _child = DpkgIndex(Path(sys.argv[2]))
    _child._build_here()
    sys.stdout.buffer.write(pickle.dumps((_child.owners.parts(), _child.md5.parts())))
