"""Approvers: what every event that can match some rule of an event type is sure to carry.

The kernel stage keeps an event only if it carries one, so the set must be *complete* (sound): an
event that matches a rule always passes `Approvers.passes`. Each rule is analysed on its condition
pushed to negation normal form:

* a comparison of the path/name with literals or globs gives exact paths, basenames, direct parent
  directories (`/d/*`) or ancestor directories (`/d/**`); a comparison of `open.flags` with masks
  gives an open-flag gate; anything else (regex, negation, `process.*`, plugin fields) constrains
  nothing;
* `a && b` keeps whichever side filters better (either alone is implied by the conjunction);
* `a || b` needs both sides constrained and takes the union.

Per event type, the rules' approvers are united; a rule with no path approver turns the path part
into accept-all (with the reason), and the flag gate exists only if every open rule has one.

rename/link/symlink: a rule on `<type>.file.destination.path` approves through the destination, kept
apart in `Approvers.destination`; an event passes if its file carries a file approver *or* its
destination carries a destination approver (`fim.write` on rename/link yields both).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from otel_fim.constants import O_ACCMODE
from otel_fim.event import Event, EventType
from otel_fim.rules.glob import glob_shape
from otel_fim.rules.ir import (
    NEGATED,
    AllOf,
    AnyOf,
    BitExpr,
    BoolValue,
    Cmp,
    Cond,
    Const,
    FieldRef,
    Negate,
    Pattern,
    Truth,
)

# Lower is more selective; a set is as weak as its weakest member.
_RANK = {"paths": 0, "basenames": 1, "parent_dirs": 2, "ancestor_dirs": 3}


def ancestors(path: str) -> list[str]:
    """Proper ancestors of `path`, nearest first, without the root: /a/b/c → [/a/b, /a]."""
    out = []
    head = path.rsplit("/", 1)[0]
    while head:
        out.append(head)
        head = head.rsplit("/", 1)[0]
    return out


@dataclass(frozen=True, slots=True)
class PathSet:
    """Path approvers for one side of an event: it passes if it carries any one of them."""

    basenames: frozenset[str] = frozenset()
    paths: frozenset[str] = frozenset()
    parent_dirs: frozenset[str] = frozenset()
    ancestor_dirs: frozenset[str] = frozenset()

    def union(self, other: PathSet) -> PathSet:
        return PathSet(
            self.basenames | other.basenames,
            self.paths | other.paths,
            self.parent_dirs | other.parent_dirs,
            self.ancestor_dirs | other.ancestor_dirs,
        )

    def __bool__(self) -> bool:
        return bool(self.basenames or self.paths or self.parent_dirs or self.ancestor_dirs)

    def size(self) -> int:
        return len(self.basenames) + len(self.paths) + len(self.parent_dirs) + len(self.ancestor_dirs)

    def rank(self) -> int:
        present = [r for name, r in _RANK.items() if getattr(self, name)]
        return max(present, default=-1)

    def matches(self, path: str | None) -> bool:
        if path is None:
            return False
        if path in self.paths:
            return True
        head, _, name = path.rpartition("/")
        if name in self.basenames or (head or "/") in self.parent_dirs:
            return True
        if self.ancestor_dirs:
            return any(a in self.ancestor_dirs for a in ancestors(path))
        return False


@dataclass(frozen=True, slots=True)
class PathFilter:
    """Passes when the file matches `file` or the destination matches `destination`."""

    file: PathSet = PathSet()
    destination: PathSet = PathSet()

    def union(self, other: PathFilter) -> PathFilter:
        return PathFilter(self.file.union(other.file), self.destination.union(other.destination))

    def score(self) -> tuple[int, int]:
        return (max(self.file.rank(), self.destination.rank()), self.file.size() + self.destination.size())


@dataclass(frozen=True, slots=True)
class FlagGate:
    """An open passes if `flags & any != 0`, or if `rdonly` and it is a read-only open."""

    any: int
    rdonly: bool = False

    def union(self, other: FlagGate) -> FlagGate:
        return FlagGate(self.any | other.any, self.rdonly or other.rdonly)

    def score(self) -> tuple[int, int]:
        return (int(self.rdonly), bin(self.any).count("1"))

    def passes(self, flags: int) -> bool:
        return bool(flags & self.any) or (self.rdonly and flags & O_ACCMODE == 0)


@dataclass(frozen=True, slots=True)
class Filter:
    """What one condition implies. `paths is None`: no path approver (`why` says why)."""

    paths: PathFilter | None
    gate: FlagGate | None
    why: str = ""


UNCONSTRAINED = Filter(None, None, "no condition on the file's path or name")
NOTHING = Filter(PathFilter(), FlagGate(0))  # an unsatisfiable condition: nothing needs to pass


def _better_paths(a: Filter, b: Filter) -> tuple[PathFilter | None, str]:
    if a.paths is None:
        return b.paths, b.why if b.paths is None else ""
    if b.paths is None or a.paths.score() <= b.paths.score():
        return a.paths, ""
    return b.paths, ""


def _better_gate(a: FlagGate | None, b: FlagGate | None) -> FlagGate | None:
    if a is None or b is None:
        return a or b
    return a if a.score() <= b.score() else b


def conjunction(a: Filter, b: Filter) -> Filter:
    paths, why = _better_paths(a, b)
    return Filter(paths, _better_gate(a.gate, b.gate), why)


def disjunction(a: Filter, b: Filter) -> Filter:
    paths = a.paths.union(b.paths) if a.paths is not None and b.paths is not None else None
    gate = a.gate.union(b.gate) if a.gate is not None and b.gate is not None else None
    why = a.why if a.paths is None else b.why if b.paths is None else ""
    return Filter(paths, gate, why)


# --- leaves -------------------------------------------------------------------------------------


def _glob_set(pattern: str) -> PathSet | None:
    shape = glob_shape(pattern)
    if shape.exact is not None:
        return PathSet(paths=frozenset([shape.exact]))
    if shape.basename is not None:
        return PathSet(basenames=frozenset([shape.basename]))
    if shape.parent is not None:
        return PathSet(parent_dirs=frozenset([shape.parent]))
    if shape.ancestor is not None:
        return PathSet(ancestor_dirs=frozenset([shape.ancestor]))
    return None


def _path_leaf(op: str, right: object, name: str) -> PathSet | str:
    """Approvers of `<side>.path <op> right`, or why there are none."""
    items = right if isinstance(right, tuple) else (right,)
    out = PathSet()
    for item in items:
        if isinstance(item, Const) and isinstance(item.value, str):
            got = PathSet(paths=frozenset([item.value]))
        elif isinstance(item, Pattern) and not item.is_regex:
            glob = _glob_set(item.text)
            if glob is None:
                return f"glob '{item.text}' on {name} has no fixed directory or basename"
            got = glob
        elif isinstance(item, Pattern):
            return f"regex on {name}"
        else:
            return f"unsupported comparison on {name}"
        out = out.union(got)
    return out


def _name_leaf(op: str, right: object, name: str) -> PathSet | str:
    items = right if isinstance(right, tuple) else (right,)
    names = set()
    for item in items:
        if isinstance(item, Const) and isinstance(item.value, str):
            names.add(item.value)
        elif isinstance(item, Pattern) and item.is_literal:
            names.add(item.text)
        else:
            kind = "regex" if isinstance(item, Pattern) and item.is_regex else "glob"
            return f"{kind} on {name}"
    return PathSet(basenames=frozenset(names))


def _flag_mask(left: object) -> int | None:
    """The mask M of `open.flags & M` (-1 for bare `open.flags`), or None if not a flags operand."""
    if isinstance(left, FieldRef) and left.field.key == "open.flags":
        return -1
    if isinstance(left, BitExpr) and left.op == "&":
        pair = (left.left, left.right)
        for a, b in (pair, pair[::-1]):
            if isinstance(a, FieldRef) and a.field.key == "open.flags" and isinstance(b, Const):
                return int(b.value)  # type: ignore[call-overload]
    return None


def _gate_for_equal(mask: int, value: int) -> FlagGate | None:
    """Gate implied by `flags & mask == value` (mask -1: `flags == value`)."""
    if value != 0:
        return FlagGate(value & mask)  # 0 when unsatisfiable: then nothing must pass
    if mask == -1 or mask & O_ACCMODE == O_ACCMODE:
        return FlagGate(0, rdonly=True)
    return None


def _gate_leaf(op: str, mask: int, right: object) -> FlagGate | None:
    if op == "in" and isinstance(right, tuple):
        gates = [_gate_for_equal(mask, int(i.value)) if isinstance(i, Const) else None for i in right]  # type: ignore[call-overload]
        if not gates or any(g is None for g in gates):
            return FlagGate(0) if not gates else None
        out = gates[0]
        for g in gates[1:]:
            out = out.union(g)  # type: ignore[union-attr,arg-type]
        return out
    if not isinstance(right, Const) or not isinstance(right.value, int):
        return None
    v = right.value
    if op == "==":
        return _gate_for_equal(mask, v)
    if mask == -1:
        return None
    # flags & mask is never negative, so "> 0", ">= 1" and "!= 0" all say "some bit of mask is set".
    if (op == "!=" and v == 0) or (op == ">" and v >= 0) or (op == ">=" and v >= 1):
        return FlagGate(mask)
    return None


def _leaf(cmp: Cmp, negated: bool) -> Filter:
    op = cmp.op
    if negated:
        positive = {v: k for k, v in NEGATED.items()}
        if op in NEGATED:
            op = NEGATED[op]
        elif op in positive:
            op = positive[op]
        else:
            return Filter(None, None, "negated ordering comparison")
    mask = _flag_mask(cmp.left)
    if mask is not None:
        return Filter(None, _gate_leaf(op, mask, cmp.right), UNCONSTRAINED.why)
    left = cmp.left
    if not isinstance(left, FieldRef) or left.field.key is None or left.field.key == "open.flags":
        return UNCONSTRAINED
    side, _, attr = left.field.key.partition(".")
    if op in NEGATED:
        return Filter(None, None, f"negative comparison on {left.field.name}")
    if op not in ("==", "=~", "in") or attr not in ("path", "name"):
        return UNCONSTRAINED
    leaf = _path_leaf if attr == "path" else _name_leaf
    got = leaf(op, cmp.right, left.field.name)
    if isinstance(got, str):
        return Filter(None, None, got)
    paths = PathFilter(file=got) if side == "file" else PathFilter(destination=got)
    return Filter(paths, None)


def analyze(cond: Cond, negated: bool = False) -> Filter:
    """The approvers implied by `cond` (by `not cond` when `negated`)."""
    if isinstance(cond, Negate):
        return analyze(cond.item, not negated)
    if isinstance(cond, AllOf | AnyOf):
        conj = isinstance(cond, AllOf) != negated  # De Morgan
        combine = conjunction if conj else disjunction
        result = analyze(cond.items[0], negated)
        for item in cond.items[1:]:
            result = combine(result, analyze(item, negated))
        return result
    if isinstance(cond, Truth):
        return UNCONSTRAINED if cond.value != negated else NOTHING
    if isinstance(cond, Cmp):
        return _leaf(cond, negated)
    if isinstance(cond, BoolValue):
        return UNCONSTRAINED
    raise TypeError(f"cannot analyse {cond!r}")


# --- per event type -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Approvers:
    """Per event type. `passes(event)`: the open-flag gate (if any) and then, unless `accept_all`,
    one path approver on the file or on the destination. `flags_any` is honoured even with
    `accept_all` (then only the gate filters)."""

    event_type: EventType
    accept_all: bool
    reason: str = ""
    basenames: frozenset[str] = frozenset()
    paths: frozenset[str] = frozenset()
    parent_dirs: frozenset[str] = frozenset()
    ancestor_dirs: frozenset[str] = frozenset()
    destination: PathSet = field(default_factory=PathSet)
    flags_any: int | None = None
    allow_rdonly: bool = False

    @property
    def file(self) -> PathSet:
        return PathSet(self.basenames, self.paths, self.parent_dirs, self.ancestor_dirs)

    def passes_flags(self, flags: int | None) -> bool:
        if self.flags_any is None or flags is None:
            return True
        return FlagGate(self.flags_any, self.allow_rdonly).passes(flags)

    def passes(self, event: Event) -> bool:
        if event.type is not self.event_type:
            return False
        if not self.passes_flags(getattr(event.details, "flags", None)):
            return False
        if self.accept_all:
            return True
        if self.file.matches(event.file.path):
            return True
        dest = getattr(event.details, "destination", None)
        return dest is not None and self.destination.matches(dest.path)


def build_approvers(event_type: EventType, filters: list[tuple[str, Filter]]) -> Approvers:
    """Unite the filters of the enabled rules (rule id, filter) of one event type."""
    if not filters:
        return Approvers(event_type, False, "no rule for this event type: nothing passes")
    gate: FlagGate | None = None
    if event_type is EventType.OPEN and all(f.gate is not None for _, f in filters):
        for _, f in filters:
            gate = f.gate if gate is None else gate.union(f.gate)  # type: ignore[arg-type]
    flags: dict[str, Any] = {"flags_any": gate.any, "allow_rdonly": gate.rdonly} if gate is not None else {}
    open_paths = [(rid, f) for rid, f in filters if f.paths is None]
    if open_paths:
        reason = "; ".join(f"rule '{rid}': {f.why}" for rid, f in open_paths[:3])
        if len(open_paths) > 3:
            reason += f"; and {len(open_paths) - 3} more rules"
        return Approvers(event_type, True, reason, **flags)
    total = PathFilter()
    for _, f in filters:
        total = total.union(f.paths)  # type: ignore[arg-type]
    fs = total.file
    return Approvers(
        event_type,
        False,
        "",
        fs.basenames,
        fs.paths,
        fs.parent_dirs,
        fs.ancestor_dirs,
        total.destination,
        **flags,
    )
