"""hash: the sha256 of the file after the change, on the matched event's log record.

Attributes (`otel_fim.plugin.hash.*`):
  sha256   hex digest of the content now at the event's file (a rename's or link's destination)
  size     its size in bytes
  skipped  why there is no digest: too_large, missing (gone by the time we looked), not_regular,
           unreadable
  status   unavailable: the file could not be read as its writer saw it (a container none of whose
           processes is left), with `reason`; no other file is read instead

The file is read in the writer's mount namespace and root (`plugin_api.open_content`).

As an enricher it hashes every matched event that leaves a file behind (unlink and rmdir do not).
As a rule action (`actions: [hash]` or `[{hash: {max_bytes: 1048576}}]`) it hashes only the events
of the rules that ask, when `all_matches: false` is configured; the action's `max_bytes` overrides
the configured limit for that rule.

Config (`plugins.config.hash`):
  all_matches: true           hash every matched event (false: only rules listing the action)
  max_bytes: 16777216         larger files are not read (skipped: too_large)
  settle_seconds: 1.0         after an open-for-write, wait at most this long for the writer to finish
"""

from __future__ import annotations

import hashlib
import os
import stat
from typing import Any

from otel_fim.plugin_api import (
    ActionSchema,
    ContentUnavailable,
    Param,
    actions_named,
    content_path,
    hookimpl,
    open_content,
    wait_for_writer,
)

DEFAULTS = {"all_matches": True, "max_bytes": 16 * 1024 * 1024, "settle_seconds": 1.0}
_settings: dict[str, Any] = dict(DEFAULTS)


def _positive(value: Any) -> str | None:
    return None if value > 0 else "must be > 0"


@hookimpl
def otel_fim_startup(plugin_config):
    unknown = set(plugin_config) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"unknown settings: {', '.join(sorted(unknown))} (known: {', '.join(DEFAULTS)})")
    _settings.clear()
    _settings.update(DEFAULTS, **plugin_config)


@hookimpl
def otel_fim_rule_actions():
    return {
        "hash": ActionSchema(
            {"max_bytes": Param(int, default=None, check=_positive, doc="largest file to read")},
            doc="attach the sha256 of the file after the change to the record",
        )
    }


@hookimpl
def otel_fim_run_action():
    """The digest is computed while enriching (it must be on the record); nothing is left to do."""


@hookimpl
def otel_fim_enrich(event, matches):
    asked = actions_named(matches, "hash")
    if not asked and not _settings["all_matches"]:
        return None
    path = content_path(event)
    if path is None:
        return None
    limits = [a["max_bytes"] for a in asked if a.get("max_bytes")]
    max_bytes = max(limits) if limits else _settings["max_bytes"]
    wait_for_writer(event, path, _settings["settle_seconds"])
    return file_digest(path, max_bytes, event)


def file_digest(path: str, max_bytes: int, event: Any = None) -> dict[str, Any]:
    """The digest of `path` as `event`'s writer sees it (no event: in the agent's namespace)."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = open_content(event, path, flags) if event is not None else os.open(path, flags)
    except ContentUnavailable as exc:
        return {"status": "unavailable", "reason": exc.reason}
    except FileNotFoundError:
        return {"skipped": "missing"}
    except OSError as exc:
        return {"skipped": "not_regular" if exc.errno == 40 else "unreadable"}  # ELOOP: a symlink
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        return {"skipped": "not_regular"}
    with os.fdopen(fd, "rb") as f:
        if st.st_size > max_bytes:
            return {"skipped": "too_large", "size": st.st_size}
        digest = hashlib.sha256()
        size = 0
        while chunk := f.read(1 << 20):
            size += len(chunk)
            if size > max_bytes:  # grew while we read
                return {"skipped": "too_large", "size": size}
            digest.update(chunk)
    return {"sha256": digest.hexdigest(), "size": size}
