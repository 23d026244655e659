"""What the rule engine returns for one rule that matched one event."""

from __future__ import annotations

from dataclasses import dataclass, field

SEVERITIES = ("info", "low", "medium", "high", "critical")


@dataclass(frozen=True, slots=True)
class Match:
    rule_id: str
    severity: str  # one of SEVERITIES
    description: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    ruleset: str = ""  # the policy file's name (its stem) the rule came from
    category: str = ""  # e.g. the MITRE ATT&CK tactic or the rule's `category` tag
    actions: tuple[dict[str, dict], ...] = ()  # [{action_name: {params}}] as written in the policy
    reference: str = ""  # URL: security_rule.reference
