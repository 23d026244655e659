"""Discarders: values that prove no rule of an event type can match, whatever the rest of the event.

Each rule's condition is evaluated in three-valued (Kleene) logic over a *partial* event of which one
thing is known: its exact path, its basename, or a directory it lies below. Comparisons on that
known part are decided (the path case reuses the rule's own predicate, so it agrees with
evaluation exactly); everything else - flags, process fields, plugin fields, the other side of a
rename - is UNKNOWN. A value is a discarder only if every rule comes out FALSE.

Results are conservative: FALSE is a proof, UNKNOWN may hide a FALSE the analysis cannot see.
"""

from __future__ import annotations

from dataclasses import dataclass

from otel_fim.rules.glob import basename_can_match, below_prefix, can_match_with_prefix
from otel_fim.rules.glob import is_glob as glob_chars
from otel_fim.rules.ir import AllOf, AnyOf, BoolValue, Cmp, Cond, Const, FieldRef, Negate, Pattern, Truth

# Kleene truth values
TRUE, FALSE, UNKNOWN = True, False, None
Tri = bool | None

KINDS = ("path", "name", "directory")


@dataclass(frozen=True, slots=True)
class Known:
    side: str  # "file" or "destination"
    kind: str  # "path", "name" or "directory"
    value: str


def parse_field(field: str) -> tuple[str, str] | None:
    """'file.path' → ('file', 'path'); 'destination.directory' → ('destination', 'directory')."""
    side, _, kind = field.partition(".")
    if side in ("file", "destination") and kind in KINDS:
        return side, kind
    return None


def _not(v: Tri) -> Tri:
    return None if v is None else not v


def _and(values: list[Tri]) -> Tri:
    if any(v is False for v in values):
        return FALSE
    return TRUE if all(v is True for v in values) else UNKNOWN


def _or(values: list[Tri]) -> Tri:
    if any(v is True for v in values):
        return TRUE
    return FALSE if all(v is False for v in values) else UNKNOWN


def _items(cmp: Cmp) -> tuple[object, ...]:
    return cmp.right if isinstance(cmp.right, tuple) else (cmp.right,)


def _item_possible(item: object, known: Known) -> Tri:
    """Can a path described by `known` (name or directory) equal/match this item? FALSE, UNKNOWN, or
    TRUE when every such path matches."""
    if isinstance(item, Const) and isinstance(item.value, str):
        text, is_glob = item.value, False
    elif isinstance(item, Pattern) and not item.is_regex:
        text, is_glob = item.text, not item.is_literal
    else:
        return UNKNOWN  # a regex: no cheap proof
    if known.kind == "name":
        if is_glob:
            return UNKNOWN if basename_can_match(text, known.value) else FALSE
        return UNKNOWN if text.rsplit("/", 1)[-1] == known.value else FALSE
    prefix = below_prefix(known.value)
    if is_glob:
        # `<literal>**` covers everything below a directory inside it: TRUE, which lets negations
        # (`!~ "/usr/**"`) prove discarders too.
        head = text[:-2]
        if text.endswith("**") and not glob_chars(head) and prefix.startswith(head):
            return TRUE
        return UNKNOWN if can_match_with_prefix(text, prefix) else FALSE
    return UNKNOWN if text.startswith(prefix) and len(text) > len(prefix) else FALSE


def _path_leaf(cmp: Cmp, known: Known) -> Tri:
    """The positive comparison on the path, knowing only a name or a directory."""
    if cmp.positive_op not in ("==", "=~", "in"):
        return UNKNOWN
    return _or([_item_possible(item, known) for item in _items(cmp)])


def _leaf(cmp: Cmp, known: Known) -> Tri:
    left = cmp.left
    if cmp.pred is None or not isinstance(left, FieldRef) or left.field.key is None:
        return UNKNOWN
    side, _, attr = left.field.key.partition(".")
    if side != known.side or attr not in ("path", "name"):
        return UNKNOWN
    if known.kind == "path":
        value = known.value if attr == "path" else known.value.rsplit("/", 1)[-1]
        positive: Tri = cmp.pred(value)
    elif attr == "name":
        positive = cmp.pred(known.value) if known.kind == "name" else UNKNOWN
    else:
        positive = _path_leaf(cmp, known)
    return _not(positive) if cmp.negated else positive


def partial_eval(cond: Cond, known: Known) -> Tri:
    if isinstance(cond, Cmp):
        return _leaf(cond, known)
    if isinstance(cond, AllOf):
        return _and([partial_eval(c, known) for c in cond.items])
    if isinstance(cond, AnyOf):
        return _or([partial_eval(c, known) for c in cond.items])
    if isinstance(cond, Negate):
        return _not(partial_eval(cond.item, known))
    if isinstance(cond, Truth):
        return cond.value
    if isinstance(cond, BoolValue):
        return UNKNOWN
    return UNKNOWN  # anything a later extension adds: assume it could be true


def can_match(cond: Cond, known: Known) -> bool:
    """False only when no event carrying `known` can satisfy `cond`."""
    return partial_eval(cond, known) is not FALSE
