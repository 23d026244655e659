"""From syntax tree to typed IR: name resolution, type checks, macro inlining, event-type inference
and the `fim.write` expansion.

Every problem is an ExpressionError at the offset of the offending token; the policy loader maps it
to file:line:col. Inside an inlined macro, positions are those of the macro's name in the rule (the
macro's own text is checked, with its own positions, when the macro is loaded).
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass

from otel_fim.constants import ALL_CONSTANTS as _SHARED_CONSTANTS
from otel_fim.constants import O_ACCMODE, OPEN_FLAGS, OPEN_WRITE_MASK
from otel_fim.event import EventType
from otel_fim.rules import parser as syn
from otel_fim.rules.errors import ExpressionError
from otel_fim.rules.fields import (
    PSEUDO_PREFIX,
    WRITE_FIELDS,
    WRITE_SIDES,
    FieldRegistry,
    FieldType,
    pseudo_names,
)
from otel_fim.rules.ir import (
    MIRROR,
    ORDERING,
    AllOf,
    AnyOf,
    BitExpr,
    BoolValue,
    Cmp,
    Cond,
    Const,
    FieldRef,
    Item,
    Negate,
    Pattern,
    Truth,
    Value,
    WriteRef,
    field_of,
    make_predicate,
)
from otel_fim.rules.limits import MAX_DEPTH, MAX_EXPANDED_NODES
from otel_fim.rules.regex import RegexError

WRITE = "fim.write"
# Inlined macros add their own depth to the rule's (each is bounded by MAX_DEPTH on its own).
MAX_EXPANDED_DEPTH = 2 * MAX_DEPTH
# The language's named constants: O_* flags (with the O_ACCMODE mask) and S_* mode bits.
ALL_CONSTANTS: dict[str, int] = {**_SHARED_CONSTANTS, "O_ACCMODE": O_ACCMODE}
# An open modifies its file when it writes, creates, truncates or appends; O_TMPFILE's own bit
# (O_TMPFILE minus O_DIRECTORY) makes an anonymous file that linkat() can later publish.
WRITE_OPEN_FLAGS = OPEN_WRITE_MASK | (OPEN_FLAGS["O_TMPFILE"] & ~OPEN_FLAGS["O_DIRECTORY"])


@dataclass(frozen=True, slots=True)
class MacroDef:
    id: str
    expression: syn.Node | None = None  # a condition macro
    values: tuple[syn.Node, ...] | None = None  # a list macro: the items, as syntax
    broken: bool = False  # failed its own checks; users get one short error, not a repeat


@dataclass(frozen=True, slots=True)
class CompiledExpression:
    kind: EventType | str  # the event type, or WRITE
    per_type: dict[EventType, Cond]  # the condition each event type evaluates

    @property
    def event_types(self) -> frozenset[EventType]:
        return frozenset(self.per_type)


def _suggest(name: str, candidates: list[str]) -> str:
    close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.75)
    return f" (did you mean '{close[0]}'?)" if close else ""


class _Resolver:
    def __init__(self, macros: Mapping[str, MacroDef], fields: FieldRegistry):
        self.macros = macros
        self.fields = fields
        self.types: dict[str, int] = {}  # event type (or WRITE) -> where it was first used
        self.stack: list[str] = []  # macros being inlined, for cycle detection
        self.at: int | None = None  # position override while inside a macro
        self.nodes = 0  # conditions resolved so far, macros inlined
        self.depth = 0  # current nesting of conditions, macros inlined

    def pos(self, node: syn.Node) -> int:
        return self.at if self.at is not None else node.pos

    def fail(self, message: str, node: syn.Node | int) -> ExpressionError:
        pos = node if isinstance(node, int) else self.pos(node)
        if self.stack:
            message = f"in macro '{self.stack[0]}': {message}"
        return ExpressionError(message, pos)

    # --- names ------------------------------------------------------------------------------

    def _unknown(self, node: syn.Name) -> ExpressionError:
        name = node.name
        candidates = [*self.fields.names(), *pseudo_names(), *self.macros, *ALL_CONSTANTS]
        if name.isupper() or name.startswith(("O_", "S_")):
            what = "constant"
        elif "." in name:
            what = "field"
        else:
            what = "field or macro"
        return self.fail(f"unknown {what} '{name}'{_suggest(name, candidates)}", node)

    def _note_type(self, kind: str, node: syn.Node) -> None:
        self.types.setdefault(kind, self.pos(node))

    def _macro(self, node: syn.Name) -> MacroDef | None:
        macro = self.macros.get(node.name)
        if macro is None:
            return None
        if macro.broken:
            raise self.fail(f"macro '{node.name}' has errors (reported at its definition)", node)
        if node.name in self.stack:
            cycle = " -> ".join([*self.stack[self.stack.index(node.name) :], node.name])
            raise self.fail(f"macro cycle: {cycle}", node)
        return macro

    def _inline(self, macro: MacroDef, node: syn.Name) -> Cond:
        assert macro.expression is not None
        saved = self.at
        self.at = self.pos(node)
        self.stack.append(macro.id)
        try:
            return self.cond(macro.expression)
        finally:
            self.stack.pop()
            self.at = saved

    def value(self, node: syn.Node) -> Value:
        if isinstance(node, syn.Int):
            return Const(node.value, FieldType.INT, self.pos(node))
        if isinstance(node, syn.Str):
            return Const(node.value, FieldType.STR, self.pos(node))
        if isinstance(node, syn.Bool):
            return Const(node.value, FieldType.BOOL, self.pos(node))
        if isinstance(node, syn.BitOp):
            return self._bitop(node)
        if isinstance(node, syn.Name):
            return self._name_value(node)
        if isinstance(node, syn.Regex):
            raise self.fail("a regex can only follow =~ or !~ (or sit in an `in` list)", node)
        if isinstance(node, syn.ListLit):
            raise self.fail("a list can only follow `in` or `not in`", node)
        raise self.fail("expected a value (field, constant or literal), found a condition", node)

    def _name_value(self, node: syn.Name) -> Value:
        name = node.name
        if name in ALL_CONSTANTS:
            return Const(ALL_CONSTANTS[name], FieldType.INT, self.pos(node))
        field = self.fields.lookup(name)
        if field is not None:
            if field.event_type is not None:
                self._note_type(field.event_type.value, node)
            return FieldRef(field, self.pos(node))
        if name.startswith(PSEUDO_PREFIX):
            attr = name.removeprefix(PSEUDO_PREFIX + "file.")
            if name.startswith(PSEUDO_PREFIX + "file.") and attr in WRITE_FIELDS:
                self._note_type(WRITE, node)
                kind = FieldType.INT if attr == "inode" else FieldType.STR
                return WriteRef(attr, kind, self.pos(node))
        macro = self._macro(node)
        if macro is not None:
            what = "a list; use it after `in`" if macro.values is not None else "a condition"
            raise self.fail(f"macro '{name}' is {what}, not a value", node)
        raise self._unknown(node)

    def _bitop(self, node: syn.BitOp) -> Value:
        left, right = self.value(node.left), self.value(node.right)
        for side in (left, right):
            if side.type is not FieldType.INT:
                raise self.fail(f"'{node.op}' needs integers, this is {side.type}", side.pos)
        if isinstance(left, Const) and isinstance(right, Const):
            a, b = left.value, right.value
            assert isinstance(a, int) and isinstance(b, int)
            folded = a & b if node.op == "&" else a | b if node.op == "|" else a ^ b
            return Const(folded, FieldType.INT, left.pos)
        return BitExpr(node.op, left, right, self.pos(node))

    # --- conditions -------------------------------------------------------------------------

    def cond(self, node: syn.Node) -> Cond:
        # Macros are inlined: bound the rule's size and depth as expanded, not as written.
        self._count(1, node)
        self.depth += 1
        try:
            if self.depth > MAX_EXPANDED_DEPTH:
                raise self.fail(
                    f"the expression nests more than {MAX_EXPANDED_DEPTH} levels with macros inlined", node
                )
            return self._cond(node)
        finally:
            self.depth -= 1

    def _cond(self, node: syn.Node) -> Cond:
        if isinstance(node, syn.And):
            return AllOf((self.cond(node.left), self.cond(node.right)))
        if isinstance(node, syn.Or):
            return AnyOf((self.cond(node.left), self.cond(node.right)))
        if isinstance(node, syn.Not):
            return Negate(self.cond(node.operand))
        if isinstance(node, syn.Bool):
            return Truth(node.value)
        if isinstance(node, syn.Compare):
            return self._compare(node)
        if isinstance(node, syn.Name):
            macro = self._macro(node)
            if macro is not None:
                if macro.values is not None:
                    raise self.fail(f"macro '{node.name}' is a list; use it after `in`", node)
                return self._inline(macro, node)
            ref = self._name_value(node)
            if ref.type is FieldType.BOOL and isinstance(ref, FieldRef | WriteRef):
                return BoolValue(ref)
            raise self.fail(f"'{node.name}' is {ref.type}, not a condition; compare it", node)
        if isinstance(node, syn.BitOp):
            raise self.fail(f"'{node.op}' gives an integer, not a condition; add e.g. `!= 0`", node)
        raise self.fail("expected a condition, found a lone value", node)

    def _items(self, node: syn.Node, elem: FieldType) -> tuple[Item, ...]:
        if isinstance(node, syn.ListLit):
            raw = node.items
        elif isinstance(node, syn.Name) and (m := self._macro(node)) is not None:
            if m.values is None:
                raise self.fail(f"macro '{node.name}' is a condition, not a list", node)
            saved, self.at = self.at, self.pos(node)
            try:
                self._count(len(m.values), node)
                return tuple(self._item(i, elem) for i in m.values)
            finally:
                self.at = saved
        else:
            raise self.fail("`in` needs a list `[...]` or the id of a list macro", node)
        self._count(len(raw), node)
        return tuple(self._item(i, elem) for i in raw)

    def _count(self, items: int, node: syn.Node) -> None:
        self.nodes += items
        if self.nodes > MAX_EXPANDED_NODES:
            raise self.fail(
                f"the expression has more than {MAX_EXPANDED_NODES} parts once macros are inlined", node
            )

    def _item(self, node: syn.Node, elem: FieldType) -> Item:
        if isinstance(node, syn.Regex | syn.Str) and elem is FieldType.STR:
            return self._pattern(node)
        value = self.value(node)
        if not isinstance(value, Const):
            raise self.fail("list items must be literals or constants", node)
        if value.type is not elem:
            raise self.fail(f"wrong operand type: the field is {elem}, this item is {value.type}", node)
        return value

    def _pattern(self, node: syn.Node) -> Pattern:
        if isinstance(node, syn.Str):
            try:
                return Pattern(node.value, False, self.pos(node))
            except RegexError as e:
                raise self.fail(f"glob: {e}", node) from None
        if isinstance(node, syn.Regex):
            try:
                return Pattern(node.value, True, self.pos(node))
            except RegexError as e:
                # Point into the pattern: past `r"` and the characters before the problem.
                at = self.pos(node) + (2 + e.offset if self.at is None and e.offset else 0)
                raise self.fail(str(e), at) from None
        raise self.fail('=~ and !~ need a glob string or a regex r"..."', node)

    def _compare(self, node: syn.Compare) -> Cond:
        op = node.op
        left = self.value(node.left)
        if op in ("in", "not in"):
            return self._make(op, left, self._items(node.right, self._elem(left, op, node)), node)
        if op in ("=~", "!~"):
            if left.type.scalar is not FieldType.STR or isinstance(left, Const):
                raise self.fail(
                    f"glob or regex match on {left.type}: '{op}' needs a string field", node.op_pos
                )
            return self._make(op, left, self._pattern(node.right), node)
        right = self.value(node.right)
        if isinstance(left, Const) and not isinstance(right, Const):
            left, right, op = right, left, MIRROR[op]  # keep the field on the left
        if left.type.scalar is not right.type.scalar:
            raise self.fail(
                f"wrong operand type: {self._what(left)} is {left.type}, {self._what(right)} is {right.type}",
                right.pos,
            )
        if op in ORDERING and left.type is not FieldType.INT:
            raise self.fail(f"'{op}' needs integers, {self._what(left)} is {left.type}", node.op_pos)
        if isinstance(left, Const) and isinstance(right, Const):
            return Truth(bool(make_predicate(op, right, False)(left.value)) ^ (op == "!="))
        return self._make(op, left, right, node)

    @staticmethod
    def _what(value: Value) -> str:
        if isinstance(value, FieldRef):
            return f"'{value.field.name}'"
        if isinstance(value, WriteRef):
            return f"'fim.write.file.{value.attr}'"
        if isinstance(value, Const):
            return repr(value.value)
        return "the bitwise expression"

    def _elem(self, left: Value, op: str, node: syn.Compare) -> FieldType:
        if isinstance(left, Const):
            raise self.fail(f"'{op}' needs a field on its left", node)
        if left.type is FieldType.BOOL:
            raise self.fail(f"'{op}' needs a string or integer field, not {left.type}", node.op_pos)
        return left.type.scalar

    def _make(self, op: str, left: Value, right: Value | Pattern | tuple[Item, ...], node: syn.Node) -> Cmp:
        pred = None
        if isinstance(right, Const | Pattern | tuple):
            ref = field_of(left)
            list_valued = ref is not None and ref.type is FieldType.STR_LIST
            pred = make_predicate(op, right, list_valued)
        return Cmp(op, left, right, self.pos(node), pred)


# --- event type and expansion -------------------------------------------------------------------


def _event_kind(types: dict[str, int], whole: int) -> EventType | str:
    if not types:
        raise ExpressionError(
            "no event type: name at least one event field (e.g. open.file.path or fim.write.file.path); "
            "process.* and container.* fields fit every event type",
            whole,
        )
    ordered = sorted(types.items(), key=lambda kv: kv[1])
    if len(ordered) > 1:
        (first, _), (second, pos) = ordered[0], ordered[1]
        raise ExpressionError(
            f"one rule cannot mix event types '{first}' and '{second}': write one rule per event type",
            pos,
        )
    kind = ordered[0][0]
    return kind if kind == WRITE else EventType(kind)


def _substitute(cond: Cond, event_type: EventType, side: str, fields: FieldRegistry) -> Cond:
    def val(v: Value) -> Value:
        if isinstance(v, WriteRef):
            return FieldRef(fields.write_field(event_type, side, v.attr), v.pos)
        if isinstance(v, BitExpr):
            return BitExpr(v.op, val(v.left), val(v.right), v.pos)
        return v

    if isinstance(cond, AllOf):
        return AllOf(tuple(_substitute(c, event_type, side, fields) for c in cond.items))
    if isinstance(cond, AnyOf):
        return AnyOf(tuple(_substitute(c, event_type, side, fields) for c in cond.items))
    if isinstance(cond, Negate):
        return Negate(_substitute(cond.item, event_type, side, fields))
    if isinstance(cond, BoolValue) and isinstance(cond.ref, WriteRef):
        ref = val(cond.ref)
        assert isinstance(ref, FieldRef)
        return BoolValue(ref)
    if isinstance(cond, Cmp):
        right = val(cond.right) if isinstance(cond.right, FieldRef | WriteRef | BitExpr) else cond.right
        return Cmp(cond.op, val(cond.left), right, cond.pos, cond.pred)
    return cond


def _write_open_gate(fields: FieldRegistry) -> Cond:
    open_flags = fields.lookup("open.flags")
    assert open_flags is not None, "open.flags is a standard field"
    flags = FieldRef(open_flags, 0)
    masked = BitExpr("&", flags, Const(WRITE_OPEN_FLAGS, FieldType.INT, 0), 0)
    zero = Const(0, FieldType.INT, 0)
    return Cmp("!=", masked, zero, 0, make_predicate("!=", zero, False))


def expand_write(cond: Cond, fields: FieldRegistry) -> dict[EventType, Cond]:
    """fim.write.* → one condition per modifying event type. Where an event has two written names
    (rename, link), the rule matches if it matches with either; an open must modify its file."""
    out: dict[EventType, Cond] = {}
    for event_type, sides in WRITE_SIDES.items():
        variants = tuple(_substitute(cond, event_type, side, fields) for side in sides)
        expanded: Cond = variants[0] if len(variants) == 1 else AnyOf(variants)
        if event_type is EventType.OPEN:
            expanded = AllOf((_write_open_gate(fields), expanded))
        out[event_type] = expanded
    return out


def compile_expression(
    text: str, macros: Mapping[str, MacroDef], fields: FieldRegistry
) -> CompiledExpression:
    """Parse, check and expand a rule expression. Raises ExpressionError."""
    resolver = _Resolver(macros, fields)
    cond = resolver.cond(syn.parse(text))
    kind = _event_kind(resolver.types, len(text) - len(text.lstrip()))
    if kind == WRITE:
        return CompiledExpression(WRITE, expand_write(cond, fields))
    assert isinstance(kind, EventType)
    return CompiledExpression(kind, {kind: cond})


def check_macro(text: str, macros: Mapping[str, MacroDef], fields: FieldRegistry) -> None:
    """A condition macro on its own: names, types, and not two event types at once."""
    resolver = _Resolver(macros, fields)
    resolver.cond(syn.parse(text))
    if len(resolver.types) > 1:
        _event_kind(resolver.types, 0)
