"""User-space half of the in-kernel filter (bpf/filters.h).

`KernelFilter.apply(ruleset)` turns each event type's approvers (from the rule compiler) into the
kernel's policy, basename, prefix and inode maps; `learn(event)` pushes discarders for events the
rule engine proved can never match. Both only ever make the kernel drop *less* than the rules
allow: approvers may over-approve, discarders carry the revision of the event they came from.
"""

from __future__ import annotations

import ctypes
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from otel_fim.event import Event, EventType
from otel_fim.kernel.layout import (
    BASENAME_KEY,
    EVENT_TYPES,
    POLICY_ACCEPT,
    POLICY_DENY,
    POLICY_DROP,
    PREFIX_MAX,
    STATE_REVISION,
    FimBasenameKey,
    FimDiscarder,
    FimInodeApprover,
    FimInodeKey,
    FimPolicy,
    FimPrefixKey,
    type_bit,
)

log = logging.getLogger(__name__)

# Their destination may be watched when the source is not: the kernel never discards them.
TWO_PATH_TYPES = frozenset({EventType.RENAME, EventType.LINK, EventType.SYMLINK})
# A discarder pushed for a key is not pushed again for this long (the kernel keeps it anyway).
REPUSH_AFTER_S = 2.0
# Discarders pushed per second at most: bounded cost even when everything is new.
MAX_PUSH_PER_S = 2000


class RuleSetLike(Protocol):
    def event_types(self) -> set[EventType]: ...
    def approvers(self, event_type: EventType) -> Any: ...
    def is_discarder(self, event_type: EventType, field: str, value: str) -> bool: ...


def kernel_dev(user_dev: int) -> int:
    """st_dev -> the kernel's dev_t encoding (major << 20 | minor), as the maps hold it."""
    return (os.major(user_dev) << 20) | os.minor(user_dev)


def _stat(path: str) -> os.stat_result | None:
    try:
        return os.stat(path)
    except OSError:
        return None


def inode_key(st_dev: int, ino: int) -> FimInodeKey:
    return FimInodeKey(ino=ino, dev=kernel_dev(st_dev))


@dataclass
class FilterStats:
    discarders_pushed: int = 0
    discarders_suppressed: int = 0  # not pushed: recently pushed, or over the rate limit
    approver_inodes: int = 0
    reloads: int = 0


@dataclass
class TypePlan:
    """What one event type gets in the kernel, and why (shown by `rules check` and the tests)."""

    mode: int
    reason: str
    basenames: frozenset[str] = frozenset()
    prefixes: frozenset[str] = frozenset()  # directories, with a trailing '/'
    files: frozenset[str] = frozenset()  # exact paths: their inodes catch hard links
    dirs: frozenset[str] = frozenset()  # directories: their inodes catch bind mounts
    flags_any: int | None = None
    allow_rdonly: bool = False


def plan_for(ruleset: RuleSetLike | None, etype: EventType, enabled: bool) -> TypePlan:
    if not enabled:
        return TypePlan(POLICY_ACCEPT, "kernel filter disabled (--no-kernel-filter)")
    if ruleset is None:
        return TypePlan(POLICY_ACCEPT, "no rules: every event is reported")
    if etype not in ruleset.event_types():
        return TypePlan(POLICY_DROP, "no rule needs this event type")
    a = ruleset.approvers(etype)
    gate = {"flags_any": a.flags_any, "allow_rdonly": a.allow_rdonly}
    if a.accept_all:
        return TypePlan(POLICY_ACCEPT, a.reason, **gate)
    sides = a.file.union(a.destination)
    dirs = sides.parent_dirs | sides.ancestor_dirs
    return TypePlan(
        POLICY_DENY,
        "deny unless approved",
        basenames=frozenset(sides.basenames | {p.rsplit("/", 1)[-1] for p in sides.paths}),
        prefixes=frozenset(d.rstrip("/") + "/" for d in dirs),
        files=frozenset(sides.paths),
        dirs=frozenset(dirs),
        **gate,
    )


class KernelFilter:
    def __init__(self, bpf: Any, enabled: bool = True) -> None:
        self.enabled = enabled
        self._policies = bpf[b"policies"]
        self._basenames = bpf[b"approver_basenames"]
        self._prefixes = bpf[b"approver_prefixes"]
        self._inodes = bpf[b"approver_inodes"]
        self._discarders = bpf[b"discarders"]
        self._state = bpf[b"filter_state"]
        self.ruleset: RuleSetLike | None = None
        self.watched_files: dict[tuple[int, int], str] = {}  # (st_dev, inode) -> watched path
        self.plans: dict[EventType, TypePlan] = {}
        self.stats = FilterStats()
        self._recent: OrderedDict[tuple[int, int, int], float] = OrderedDict()
        self._budget = float(MAX_PUSH_PER_S)
        self._budget_at = time.monotonic()

    # -- approvers ---------------------------------------------------------------------------
    def apply(self, ruleset: RuleSetLike | None) -> None:
        """(Re)load the policy. Discarders learned under the previous rules become stale at once.

        Order matters on a reload: every type accepts everything while the maps are rebuilt, so no
        event is dropped against half-built approvers; the new policies are written last."""
        self.ruleset = ruleset
        self.plans = {etype: plan_for(ruleset, etype, self.enabled) for etype in EVENT_TYPES}
        for index in range(len(EVENT_TYPES)):
            self._policies[ctypes.c_int(index)] = FimPolicy(mode=POLICY_ACCEPT)
        self.bump_revision()
        for table in (self._basenames, self._prefixes, self._discarders):
            table.clear()
        self._recent.clear()
        basenames: dict[bytes, int] = {}
        prefixes: dict[bytes, int] = {}
        for etype, plan in self.plans.items():
            bit = type_bit(etype)
            for name in plan.basenames:
                key = os.fsencode(name)[: BASENAME_KEY - 1]
                basenames[key] = basenames.get(key, 0) | bit
            for prefix in plan.prefixes:
                key = os.fsencode(prefix)[:PREFIX_MAX]
                prefixes[key] = prefixes.get(key, 0) | bit
        for name_key, mask in basenames.items():
            self._basenames[FimBasenameKey(name_key)] = ctypes.c_uint32(mask)
        for prefix_key, mask in prefixes.items():
            self._prefixes[FimPrefixKey(len(prefix_key) * 8, prefix_key)] = ctypes.c_uint32(mask)
        self.refresh_inodes()
        for index, etype in enumerate(EVENT_TYPES):
            plan = self.plans[etype]
            self._policies[ctypes.c_int(index)] = FimPolicy(
                mode=plan.mode,
                flags_any=plan.flags_any or 0,
                gate=int(plan.flags_any is not None),
                allow_rdonly=int(plan.allow_rdonly),
            )
        self.stats.reloads += 1

    def refresh_inodes(self) -> None:
        """Watched files and directories by inode: a hard link to a watched file, or a bind mount of
        a watched directory, is the same inode under another path. Re-run when files are replaced
        (a rename over /etc/passwd gives it a new inode).

        Each distinct path is stat()ed once, and the kernel map is updated in place (new entries
        first, stale ones removed after), so it is never empty while the agent runs."""
        masks: dict[tuple[str, bool], int] = {}  # (path, is_dir) -> event-type bits
        for etype, plan in self.plans.items():
            bit = type_bit(etype)
            for path in plan.files:
                masks[(path, False)] = masks.get((path, False), 0) | bit
            for path in plan.dirs:
                masks[(path, True)] = masks.get((path, True), 0) | bit
        entries: dict[tuple[int, int], FimInodeApprover] = {}
        watched_files: dict[tuple[int, int], str] = {}
        for (path, is_dir), bits in masks.items():
            st = _stat(path)
            if st is None:
                continue  # not there yet: the basename/prefix approvers cover its path
            key = (st.st_dev, st.st_ino)
            entry = entries.setdefault(key, FimInodeApprover())
            if is_dir:
                entry.dir_mask |= bits
            else:
                entry.file_mask |= bits
                watched_files[key] = path
        for (dev, ino), entry in entries.items():
            self._inodes[inode_key(dev, ino)] = entry
        wanted = {(kernel_dev(dev), ino) for dev, ino in entries}
        for key in [k for k in self._inodes.keys() if (k.dev, k.ino) not in wanted]:
            del self._inodes[key]
        self.watched_files = watched_files
        self.stats.approver_inodes = len(entries)

    # -- discarders --------------------------------------------------------------------------
    def revision(self) -> int:
        return self._state[ctypes.c_int(STATE_REVISION)].value

    def bump_revision(self) -> None:
        self._state[ctypes.c_int(STATE_REVISION)] = ctypes.c_uint64(self.revision() + 1)

    def learn(self, event: Event) -> None:
        """Called for an event that matched no rule: push what the rule engine proves."""
        ruleset = self.ruleset
        f = event.file
        if ruleset is None or not self.enabled or not f.inode or f.truncated:
            return
        plan = self.plans.get(event.type)
        if plan is None or plan.mode != POLICY_DENY or event.type in TWO_PATH_TYPES:
            return
        # A file with several names may be watched under another one: never discard it.
        if f.nlink == 1 and ruleset.is_discarder(event.type, "file.path", f.path):
            self._push(event, f.inode, file_side=True)
        if f.parent_inode and ruleset.is_discarder(event.type, "file.directory", f.directory):
            self._push(event, f.parent_inode, file_side=False)

    def _push(self, event: Event, ino: int, file_side: bool) -> None:
        key = (event.file.dev, ino, int(file_side))
        now = time.monotonic()
        if now - self._recent.get(key, -REPUSH_AFTER_S) < REPUSH_AFTER_S or not self._take_budget(now):
            self.stats.discarders_suppressed += 1
            return
        self._recent[key] = now
        self._recent.move_to_end(key)
        while len(self._recent) > 20000:
            self._recent.popitem(last=False)
        kkey = inode_key(event.file.dev, ino)
        bit = type_bit(event.type)
        entry = FimDiscarder(
            revision=event.filter_revision,
            mnt_id=event.file.mount_id,
            generation=event.file.generation if file_side else 0,
        )
        try:  # keep the other masks of an entry that is still valid
            old = self._discarders[kkey]
            if (old.revision, old.mnt_id, old.generation) == (entry.revision, entry.mnt_id, entry.generation):
                entry.file_mask, entry.dir_mask = old.file_mask, old.dir_mask
        except KeyError:
            pass
        if file_side:
            entry.file_mask |= bit
        else:
            entry.dir_mask |= bit
        self._discarders[kkey] = entry
        self.stats.discarders_pushed += 1

    def _take_budget(self, now: float) -> bool:
        self._budget = min(MAX_PUSH_PER_S, self._budget + (now - self._budget_at) * MAX_PUSH_PER_S)
        self._budget_at = now
        if self._budget < 1:
            return False
        self._budget -= 1
        return True

    def discarder_count(self) -> int:
        """Entries still valid (the map also holds stale ones until LRU eviction)."""
        rev = self.revision()
        return sum(1 for v in self._discarders.values() if v.revision == rev)

    def describe(self) -> Iterable[str]:
        for etype, plan in self.plans.items():
            mode = {POLICY_ACCEPT: "accept", POLICY_DENY: "deny", POLICY_DROP: "drop"}[plan.mode]
            yield (
                f"{etype.value}: {mode} ({plan.reason}); basenames={len(plan.basenames)} "
                f"prefixes={len(plan.prefixes)} inodes={len(plan.files) + len(plan.dirs)}"
                + (f" open_flags_any={plan.flags_any:#o}" if plan.flags_any is not None else "")
            )
