"""The rule engine: a SECL-like language, YAML policies, approvers and discarders.

    from otel_fim.rules import RuleSet
    ruleset = RuleSet.load(["rules/"])
    matches = ruleset.evaluate(event)
    ruleset.approvers(EventType.OPEN).passes(event)
    ruleset.is_discarder(EventType.OPEN, "file.directory", "/usr/lib")

Exports are lazy so that importing `otel_fim.rules.match` (as the exporters do) does not load lark.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "RuleSet": "otel_fim.rules.ruleset",
    "Rule": "otel_fim.rules.ruleset",
    "Approvers": "otel_fim.rules.approvers",
    "PathSet": "otel_fim.rules.approvers",
    "RuleError": "otel_fim.rules.errors",
    "PolicyError": "otel_fim.rules.errors",
    "Match": "otel_fim.rules.match",
    "FieldRegistry": "otel_fim.rules.fields",
    "standard_fields": "otel_fim.rules.field_catalog",
    "FieldType": "otel_fim.rules.fields",
}

__all__ = [
    "Approvers",
    "FieldRegistry",
    "FieldType",
    "Match",
    "PathSet",
    "PolicyError",
    "Rule",
    "RuleError",
    "RuleSet",
    "standard_fields",
]

if TYPE_CHECKING:
    from otel_fim.rules.approvers import Approvers, PathSet
    from otel_fim.rules.errors import PolicyError, RuleError
    from otel_fim.rules.field_catalog import standard_fields
    from otel_fim.rules.fields import FieldRegistry, FieldType
    from otel_fim.rules.match import Match
    from otel_fim.rules.ruleset import Rule, RuleSet


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'otel_fim.rules' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
