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

import hashlib
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

from otel_fim.plugin_api import PluginField, content_path, hookimpl, is_write, wait_for_writer

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
}
_MERGED = ("/bin/", "/sbin/", "/lib/", "/lib32/", "/lib64/", "/libx32/")


class DpkgIndex:
    """path -> owners, md5, conffile flag; rebuilt when dpkg's status file changes."""

    def __init__(self, admindir: Path) -> None:
        self.admindir = admindir
        self.owners: dict[str, str] = {}
        self.md5: dict[str, str] = {}
        self.conffiles: dict[str, str] = {}
        self.ready = threading.Event()
        self._status_mtime: int | None = None
        self._checked = 0.0
        self._lock = threading.Lock()

    def build(self) -> None:
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
        self.owners = {p: ",".join(sorted(set(pkgs))) for p, pkgs in owners.items()}
        self.md5 = md5
        self.conffiles = _conffiles(self.admindir / "status")
        self._status_mtime = mtime
        self.ready.set()

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


@hookimpl
def otel_fim_startup(plugin_config):
    global _index
    unknown = set(plugin_config) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"unknown settings: {', '.join(sorted(unknown))} (known: {', '.join(DEFAULTS)})")
    _settings.clear()
    _settings.update(DEFAULTS, **plugin_config)
    _index = DpkgIndex(Path(_settings["admindir"]))
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


@hookimpl
def otel_fim_rule_fields():
    return [
        PluginField("package.name", "str", _owner, doc="the Debian package(s) owning the file"),
        PluginField("package.by_manager", "bool", by_package_manager, doc="written by dpkg/apt/..."),
    ]


@hookimpl
def otel_fim_enrich(event, matches):
    index = _index
    path = content_path(event) or event.file.path
    if index is None:
        return None
    if event.container is not None:  # the host's dpkg database does not describe a container's files
        return {"status": "unavailable", "reason": "files in a container: the host's package database"}
    index.ready.wait(30)
    index.refresh()
    key = index.key(path)
    if key is None:
        return None
    out: dict[str, Any] = {
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
