"""The typed, resolved form of an expression that evaluation and the static analyses share.

Names are resolved (fields, constants, macros inlined), constants folded, and each comparison of a
field with constants carries its *positive* predicate: `==`, `=~` and `in` are the positive forms of
`!=`, `!~` and `not in`, which are their exact negations. Evaluation and the discarder analysis both
call the same predicate, so they cannot disagree.

Absent values (a getter returning None): every positive comparison with None is false, so its
negation is true: with no container, `container.id != "x"` holds and `container.id == "x"` does not.
Ordering comparisons (`< <= > >=`) are false with None and have no negated form.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from otel_fim.rules.fields import Field, FieldType
from otel_fim.rules.glob import compile_glob, is_glob
from otel_fim.rules.regex import fullmatcher

NEGATED = {"!=": "==", "!~": "=~", "not in": "in"}
POSITIVE_OPS = ("==", "<", "<=", ">", ">=", "=~", "in")
ORDERING = ("<", "<=", ">", ">=")
MIRROR = {"==": "==", "!=": "!=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}


@dataclass(frozen=True, slots=True, eq=False)
class FieldRef:
    field: Field
    pos: int

    @property
    def type(self) -> FieldType:
        return self.field.type


@dataclass(frozen=True, slots=True, eq=False)
class WriteRef:
    """`fim.write.file.<attr>` before it is expanded into one concrete field per event type."""

    attr: str
    type: FieldType
    pos: int


@dataclass(frozen=True, slots=True, eq=False)
class Const:
    value: object
    type: FieldType
    pos: int


@dataclass(frozen=True, slots=True, eq=False)
class BitExpr:
    op: str  # & | ^
    left: Value
    right: Value
    pos: int
    type: FieldType = FieldType.INT


Value = FieldRef | WriteRef | Const | BitExpr


@dataclass(frozen=True, slots=True, eq=False)
class Pattern:
    """A glob (`"/etc/*"`) or a regex (`r"..."`); both must match the whole value."""

    text: str
    is_regex: bool
    pos: int
    # Full-match predicate, linear time (RE2); raises RegexError for what RE2 cannot run.
    fullmatch: Callable[[str], bool] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        matcher = fullmatcher(self.text) if self.is_regex else compile_glob(self.text)
        object.__setattr__(self, "fullmatch", matcher)

    @property
    def is_literal(self) -> bool:
        return not self.is_regex and not is_glob(self.text)


Item = Const | Pattern


@dataclass(frozen=True, slots=True, eq=False)
class Cmp:
    op: str  # as written (after mirroring a constant on the left)
    left: Value
    right: Value | Pattern | tuple[Item, ...]
    pos: int
    # The positive form's predicate over the left value, when the right side is constant.
    pred: Callable[[Any], bool] | None = None

    @property
    def negated(self) -> bool:
        return self.op in NEGATED

    @property
    def positive_op(self) -> str:
        return NEGATED.get(self.op, self.op)


@dataclass(frozen=True, slots=True, eq=False)
class AllOf:
    items: tuple[Cond, ...]


@dataclass(frozen=True, slots=True, eq=False)
class AnyOf:
    items: tuple[Cond, ...]


@dataclass(frozen=True, slots=True, eq=False)
class Negate:
    item: Cond


@dataclass(frozen=True, slots=True, eq=False)
class Truth:
    value: bool


@dataclass(frozen=True, slots=True, eq=False)
class BoolValue:
    """A boolean field used as a condition."""

    ref: FieldRef | WriteRef


Cond = Cmp | AllOf | AnyOf | Negate | Truth | BoolValue


# --- predicates ---------------------------------------------------------------------------------


def _scalar_predicate(op: str, right: Const | Pattern | tuple[Item, ...]) -> Callable[[Any], bool]:
    if op == "==":
        assert isinstance(right, Const)
        v = right.value
        return lambda x: x == v
    if op in ORDERING:
        assert isinstance(right, Const)
        v = right.value
        if op == "<":
            return lambda x: x is not None and x < v
        if op == "<=":
            return lambda x: x is not None and x <= v
        if op == ">":
            return lambda x: x is not None and x > v
        return lambda x: x is not None and x >= v
    if op == "=~":
        assert isinstance(right, Pattern)
        if right.is_literal:
            lit = right.text
            return lambda x: x == lit
        fullmatch = right.fullmatch
        return lambda x: x is not None and fullmatch(x)
    if op == "in":
        assert isinstance(right, tuple)
        literals = frozenset(
            i.value if isinstance(i, Const) else i.text for i in right if isinstance(i, Const) or i.is_literal
        )
        patterns = [i.fullmatch for i in right if isinstance(i, Pattern) and not i.is_literal]
        if not patterns:
            return lambda x: x in literals
        return lambda x: x in literals or (x is not None and any(m(x) for m in patterns))
    raise ValueError(f"no predicate for {op!r}")


def make_predicate(
    op: str, right: Const | Pattern | tuple[Item, ...], list_valued: bool
) -> Callable[[Any], bool]:
    """The positive predicate of `op` against a constant right side; list values match if any
    element does."""
    pred = _scalar_predicate(NEGATED.get(op, op), right)
    if not list_valued:
        return pred
    return lambda xs: xs is not None and any(pred(x) for x in xs)


def field_of(value: Value) -> FieldRef | WriteRef | None:
    return value if isinstance(value, FieldRef | WriteRef) else None
