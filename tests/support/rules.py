"""Rule sets written inline for the rule engine tests."""

from __future__ import annotations

from otel_fim.event import Event
from otel_fim.rules.fields import FieldRegistry
from otel_fim.rules.ruleset import RuleSet


def ruleset(*exprs: str, macros: str = "", fields: FieldRegistry | None = None) -> RuleSet:
    """A ruleset with one rule per expression, ids r0, r1, ..."""
    rules = "\n".join(
        f"  - id: r{i}\n    expression: '{e.replace(chr(39), chr(39) * 2)}'" for i, e in enumerate(exprs)
    )
    text = (f"macros:\n{macros}\n" if macros else "") + f"rules:\n{rules}\n"
    return RuleSet.from_text(text, fields=fields)


def matched_ids(rs: RuleSet, event: Event) -> list[str]:
    return [m.rule_id for m in rs.evaluate(event)]


def matches(expr: str, event: Event, macros: str = "") -> bool:
    return bool(ruleset(expr, macros=macros).evaluate(event))
