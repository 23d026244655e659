"""diff: not only *that* a watched text file changed, but *how*, as a unified diff on the record.

When rules are loaded the plugin copies every small text file they watch (exact paths, the files
of watched directories, and `paths` from its config) into its state directory, readable only by
root (directories 0700, files 0600). On a matched write (open for writing, truncate, rename or
link onto the name, unlink) it waits for the writer to finish, diffs the copy against the file as
it is now, attaches the diff, and keeps the new content as the next baseline.

Attributes (`otel_fim.plugin.diff.*`):
  status     modified | unchanged | created (no earlier copy) | deleted | binary | too_large |
             unavailable (not readable as its writer saw it; `reason` says why) |
             excluded | missing (gone when we looked)
  unified    the unified diff (`--- <path> (baseline)` / `+++ <path>`), at most `max_diff_bytes`
  added, removed   changed line counts
  truncated  true when `unified` was cut
  note       on `unchanged`: the file was written but its content equals the copy: rewritten with
             the same content, or changed and reverted before the agent looked (the past cannot be
             read back; a change reverted by a *separate* write shows up as two diffs, + then -)

Files matching `exclude` (by default secrets: shadow files, private keys, credentials) are never
copied nor diffed: their content would otherwise end up in the exported logs.

Config (`plugins.config.diff`):
  max_bytes: 65536       larger files are not copied (status too_large)
  max_files: 2000        at most this many copies
  max_diff_bytes: 16384  longer diffs are cut (truncated: true)
  context_lines: 3
  paths: []              more files or globs (`**` crosses directories) to keep copies of
  exclude: [...]         globs (fnmatch on the full path); see DEFAULT_EXCLUDE
  settle_seconds: 1.0    after an open-for-write, wait at most this long for the writer to finish
"""

from __future__ import annotations

import difflib
import fnmatch
import glob
import hashlib
import logging
import os
import stat
import threading
import time
from pathlib import Path
from typing import Any

from otel_fim.event import EventType
from otel_fim.plugin_api import (
    ContentUnavailable,
    content_path,
    hookimpl,
    is_write,
    open_content,
    wait_for_writer,
)

log = logging.getLogger(__name__)

DEFAULT_EXCLUDE = [
    "/etc/shadow", "/etc/shadow-", "/etc/gshadow", "/etc/gshadow-", "/etc/security/opasswd",
    "/etc/ssh/ssh_host_*_key", "*/.ssh/id_*", "*.key", "*/private/*", "*/.netrc", "*/.pgpass",
    "*/.git-credentials", "*/.aws/credentials", "*/.docker/config.json", "*/.kube/config",
]  # fmt: skip
DEFAULTS: dict[str, Any] = {
    "max_bytes": 64 * 1024,
    "max_files": 2000,
    "max_diff_bytes": 16 * 1024,
    "context_lines": 3,
    "paths": [],
    "exclude": DEFAULT_EXCLUDE,
    "settle_seconds": 1.0,
}
# Event types whose approvers name files whose content a rule cares about.
_CONTENT_TYPES = (EventType.OPEN, EventType.TRUNCATE, EventType.RENAME, EventType.LINK, EventType.UNLINK)


class Baselines:
    """The copies: `<dir>/<sha256 of the path>`, mode 0600 in a 0700 directory."""

    def __init__(self, directory: Path, settings: dict[str, Any]) -> None:
        self.dir = directory
        self.settings = settings
        self.count = 0
        self.lock = threading.Lock()

    def _ensure_dir(self) -> None:
        if self.dir.is_dir():
            return
        # <state_dir>/plugins/diff/baselines: every level we create is root-only, not just the last
        state = self.dir.parent.parent.parent
        state.mkdir(mode=0o700, parents=True, exist_ok=True)
        for d in (self.dir.parent.parent, self.dir.parent, self.dir):
            if not d.is_dir():
                d.mkdir(mode=0o700)
                os.chmod(d, 0o700)

    def _file(self, path: str) -> Path:
        return self.dir / hashlib.sha256(os.fsencode(path)).hexdigest()

    def load(self, path: str) -> bytes | None:
        try:
            return self._file(path).read_bytes()
        except OSError:
            return None

    def save(self, path: str, content: bytes) -> None:
        target = self._file(path)
        if not target.exists():
            if self.count >= self.settings["max_files"]:
                return
            self.count += 1
        self._ensure_dir()
        tmp = target.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(content)
        os.replace(tmp, target)

    def drop(self, path: str) -> None:
        try:
            self._file(path).unlink()
            self.count -= 1
        except OSError:
            pass

    def name(self, path: str) -> str:
        return self._file(path).name

    def names(self) -> set[str]:
        if not self.dir.is_dir():
            return set()
        return {f.name for f in self.dir.iterdir() if f.suffix != ".tmp"}

    def drop_names(self, names: set[str]) -> None:
        for name in names:
            (self.dir / name).unlink(missing_ok=True)

    def clear(self) -> None:
        if self.dir.is_dir():
            for f in self.dir.iterdir():
                f.unlink(missing_ok=True)
        self.count = 0


_settings: dict[str, Any] = dict(DEFAULTS)
_baselines: Baselines | None = None


@hookimpl
def otel_fim_startup(plugin_config, state_dir):
    global _baselines
    unknown = set(plugin_config) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"unknown settings: {', '.join(sorted(unknown))} (known: {', '.join(DEFAULTS)})")
    _settings.clear()
    _settings.update(DEFAULTS, **plugin_config)
    _baselines = Baselines(Path(state_dir) / "baselines", _settings)


@hookimpl
def otel_fim_rules_loaded(ruleset):
    """Copy what the rules watch, now: a change is diffed against the content before it."""
    if _baselines is None:
        return
    started = time.monotonic()
    with _baselines.lock:
        # Copies from an earlier run are kept: a change made while the agent was down is then
        # diffed against them when the start-up scan reports it (otel_fim.scan), instead of being
        # silently taken as the new baseline. That includes copies of files deleted meanwhile
        # (their names are not known here, only hashed), so copies of files no longer watched are
        # dropped only when room is needed.
        wanted = {
            _baselines.name(p): p
            for p in watched_files(ruleset, _settings["paths"], _settings["max_files"] * 4)
        }
        existing = _baselines.names()
        missing = [p for name, p in wanted.items() if name not in existing]
        if len(existing) + len(missing) > _settings["max_files"]:
            _baselines.drop_names(existing - wanted.keys())
        _baselines.count = len(_baselines.names())
        kept, copied = len(wanted) - len(missing), 0
        for path in missing:
            if _baselines.count >= _settings["max_files"]:
                log.warning(
                    "diff: max_files (%d) reached; later files are not copied", _settings["max_files"]
                )
                break
            content = _read_text(path)
            if isinstance(content, bytes):
                _baselines.save(path, content)
                copied += 1
    log.info(
        "diff: copied %d watched text files, kept %d from the last run, in %.2fs",
        copied, kept, time.monotonic() - started,
    )  # fmt: skip


def watched_files(ruleset: Any, extra: list[str], limit: int) -> list[str]:
    """Regular files the rules name exactly, the files of their watched directories (the direct
    ones, then recursively below the ancestor ones), and the configured paths."""
    paths: set[str] = set()
    parents: set[str] = set()
    ancestors: set[str] = set()
    if ruleset is not None:
        for t in _CONTENT_TYPES:
            if t not in ruleset.event_types():
                continue
            approvers = ruleset.approvers(t)
            if approvers.accept_all:
                continue
            for side in (approvers.file, approvers.destination):
                paths |= side.paths
                parents |= side.parent_dirs
                ancestors |= side.ancestor_dirs
    for pattern in extra:
        paths.update(glob.glob(pattern, recursive=True))
    out: list[str] = sorted(p for p in paths if _excluded(p) is False)
    for d in sorted(parents):
        try:
            names = sorted(os.listdir(d))
        except OSError:
            continue
        out += [os.path.join(d, n) for n in names]
    for d in sorted(ancestors):
        for root, dirs, files in os.walk(d):
            dirs.sort()
            out += [os.path.join(root, n) for n in sorted(files)]
            if len(out) > limit:
                break
    seen: set[str] = set()
    result = []
    for p in out:
        if p not in seen and not _excluded(p):
            seen.add(p)
            result.append(p)
    return result[:limit]


def _excluded(path: str) -> bool:
    return any(fnmatch.fnmatchcase(path, pattern) for pattern in _settings["exclude"])


def _read_text(path: str, event: Any = None) -> bytes | str:
    """The content if `path` is a small regular text file, else why not (a status). With an event,
    the file as its writer sees it (its mount namespace and root)."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = open_content(event, path, flags) if event is not None else os.open(path, flags)
    except FileNotFoundError:
        return "missing"
    except OSError:
        return "unreadable"
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        return "not_regular"
    with os.fdopen(fd, "rb") as f:
        if st.st_size > _settings["max_bytes"]:
            return "too_large"
        content = f.read(_settings["max_bytes"] + 1)
    if len(content) > _settings["max_bytes"]:
        return "too_large"
    if b"\0" in content:
        return "binary"
    try:
        content.decode("utf-8")
    except UnicodeDecodeError:
        return "binary"
    return content


@hookimpl
def otel_fim_enrich(event, matches):
    if _baselines is None:
        return None
    if event.type is EventType.UNLINK:
        return _deleted(event.file.path, _key(event, event.file.path)) if event.succeeded else None
    if not is_write(event):
        return None  # chmod, chown, utimes, xattrs: the content did not change
    path = content_path(event)
    if path is None:
        return None
    if _excluded(path):
        return {"status": "excluded"}
    wait_for_writer(event, path, _settings["settle_seconds"])
    key, old_key = _key(event, path), _key(event, event.file.path)
    with _baselines.lock:
        before = _baselines.load(key)
        if _scan_change(event) == "created":
            before = None  # found by a scan: the copy taken at start-up is already the new file
        if before is None and event.type is EventType.RENAME:
            before = _baselines.load(old_key)  # the content moved here from the old name
        if event.type is EventType.RENAME and event.file.path != path:
            _baselines.drop(old_key)
        try:
            now = _read_text(path, event)
        except ContentUnavailable as exc:
            return {"status": "unavailable", "reason": exc.reason}
        if isinstance(now, str):
            if now in ("missing", "not_regular", "unreadable"):
                _baselines.drop(key)
            return {"status": now}
        _baselines.save(key, now)
    return describe(path, before, now)


def _key(event: Any, path: str) -> str:
    """Baselines of a container's files are its own: the host's copy of the same path is another
    file. (Copies taken when rules load are the host's.)"""
    container = getattr(event, "container", None)
    return path if container is None else f"container:{container.id}:{path}"


def _scan_change(event: Any) -> str | None:
    found = event.extra.get("otel_fim.scan")  # a scan finding (otel_fim.scan.findings)
    return found.get("change") if isinstance(found, dict) else None


def _deleted(path: str, key: str) -> dict[str, Any] | None:
    if _excluded(path):
        return {"status": "excluded"}
    with _baselines.lock:
        before = _baselines.load(key)
        if before is None:
            return None
        _baselines.drop(key)
    return {**describe(path, before, b""), "status": "deleted"}


def describe(path: str, before: bytes | None, now: bytes) -> dict[str, Any]:
    if before is not None and before == now:
        return {
            "status": "unchanged",
            "added": 0,
            "removed": 0,
            "note": "written, but the content equals the baseline: rewritten unchanged, or changed "
            "and reverted before the agent read it",
        }
    old = (before or b"").decode("utf-8", "replace").splitlines(keepends=True)
    new = now.decode("utf-8", "replace").splitlines(keepends=True)
    lines = list(
        difflib.unified_diff(
            old,
            new,
            fromfile=f"{path} (baseline)" if before is not None else "/dev/null",
            tofile=path,
            n=_settings["context_lines"],
        )
    )
    added = sum(1 for line in lines if line.startswith("+") and not line.startswith("+++"))
    removed = sum(1 for line in lines if line.startswith("-") and not line.startswith("---"))
    text = "".join(
        line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines
    )
    out: dict[str, Any] = {
        "status": "modified" if before is not None else "created",
        "added": added,
        "removed": removed,
    }
    limit = _settings["max_diff_bytes"]
    if len(text.encode()) > limit:
        text = text.encode()[:limit].decode("utf-8", "ignore")
        out["truncated"] = True
    out["unified"] = text
    return out
