"""IR → Python closures. One closure per node, built once at load time; evaluating a rule is a few
nested calls with no tree walking and no dispatch on node types."""

from __future__ import annotations

from collections.abc import Callable

from otel_fim.event import Event
from otel_fim.rules.ir import (
    AllOf,
    AnyOf,
    BitExpr,
    BoolValue,
    Cmp,
    Cond,
    Const,
    FieldRef,
    Negate,
    Truth,
    Value,
    make_predicate,
)

Program = Callable[[Event], bool]
ValueFn = Callable[[Event], object]


def _value(v: Value) -> ValueFn:
    if isinstance(v, FieldRef):
        return v.field.getter
    if isinstance(v, Const):
        c = v.value
        return lambda e: c
    if isinstance(v, BitExpr):
        left, right = _value(v.left), _value(v.right)
        if isinstance(v.right, Const):
            mask = v.right.value
            if v.op == "&":
                return lambda e: None if (x := left(e)) is None else x & mask  # type: ignore[operator]
        op = {"&": int.__and__, "|": int.__or__, "^": int.__xor__}[v.op]

        def bit(e: Event) -> object:
            a, b = left(e), right(e)
            return None if a is None or b is None else op(a, b)  # type: ignore[arg-type]

        return bit
    raise TypeError(f"unexpanded value {v!r}")


def _compare(c: Cmp) -> Program:
    get = _value(c.left)
    if c.pred is not None:
        pred = c.pred
        if c.negated:
            return lambda e: not pred(get(e))
        return lambda e: pred(get(e))
    # Field against field: compare the two values, None on either side makes it false.
    assert isinstance(c.right, FieldRef | BitExpr | Const)
    other = _value(c.right)
    positive = c.positive_op

    def dynamic(e: Event) -> bool:
        rhs = other(e)
        if rhs is None:
            return False
        # Reuse the constant predicate machinery; it is rare, so speed does not matter.
        return make_predicate(positive, Const(rhs, c.left.type, 0), False)(get(e))

    if c.negated:
        return lambda e: not dynamic(e)
    return dynamic


def compile_cond(cond: Cond) -> Program:
    if isinstance(cond, Cmp):
        return _compare(cond)
    if isinstance(cond, AllOf):
        parts = [compile_cond(c) for c in cond.items]
        if len(parts) == 2:
            a, b = parts
            return lambda e: a(e) and b(e)
        return lambda e: all(p(e) for p in parts)
    if isinstance(cond, AnyOf):
        parts = [compile_cond(c) for c in cond.items]
        if len(parts) == 2:
            a, b = parts
            return lambda e: a(e) or b(e)
        return lambda e: any(p(e) for p in parts)
    if isinstance(cond, Negate):
        inner = compile_cond(cond.item)
        return lambda e: not inner(e)
    if isinstance(cond, Truth):
        t = cond.value
        return lambda e: t
    if isinstance(cond, BoolValue):
        assert isinstance(cond.ref, FieldRef)
        get = cond.ref.field.getter
        return lambda e: get(e) is True
    raise TypeError(f"cannot compile {cond!r}")
