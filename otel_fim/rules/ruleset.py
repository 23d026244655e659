"""RuleSet: composed policies, compiled rules, and the three questions other stages ask.

* `evaluate(event)`: every enabled rule that matches, as `Match`es, in policy order. Rules are indexed
  per event type by the approvers they yield (exact path, basename, parent and ancestor directory,
  on the file and the destination), so an event only runs the rules it could match plus the
  type's "always evaluate" rules (those with no path approver).
* `approvers(event_type)`: what the kernel may keep (see `approvers.py`).
* `is_discarder(event_type, field, value)`: what the kernel may learn to drop (see `discarders.py`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from otel_fim.event import Event, EventType
from otel_fim.rules import parser as syn
from otel_fim.rules.approvers import Approvers, Filter, PathSet, analyze, build_approvers
from otel_fim.rules.codegen import Program, compile_cond
from otel_fim.rules.compiler import ALL_CONSTANTS, MacroDef, check_macro, compile_expression
from otel_fim.rules.discarders import Known, can_match, parse_field
from otel_fim.rules.errors import ExpressionError, PolicyError, RuleError
from otel_fim.rules.field_catalog import standard_fields
from otel_fim.rules.fields import FieldRegistry
from otel_fim.rules.ir import Cond
from otel_fim.rules.match import Match
from otel_fim.rules.policy import PolicyFile, RawMacro, RawRule, parse_policy, policy_files, read_policy_text

DEFAULT_SEVERITY = "medium"
_KEYWORDS = {"and", "or", "not", "in", "true", "false"}
_DISCARDER_CACHE_MAX = 65536


@dataclass
class Rule:
    id: str
    expression: str
    kind: str  # the event type's name, or "fim.write"
    event_types: frozenset[EventType]
    severity: str
    description: str
    tags: dict[str, str]
    actions: tuple[dict[str, dict], ...]
    ruleset: str  # the policy file's stem
    file: str
    line: int
    disabled: bool = False
    conditions: dict[EventType, Cond] = field(default_factory=dict, repr=False)
    programs: dict[EventType, Program] = field(default_factory=dict, repr=False)
    filters: dict[EventType, Filter] = field(default_factory=dict, repr=False)

    @property
    def category(self) -> str:
        return self.tags.get("category") or self.tags.get("tactic", "")

    def to_match(self) -> Match:
        return Match(
            self.id,
            self.severity,
            self.description,
            dict(self.tags),
            self.ruleset,
            self.category,
            self.actions,
        )

    def matches(self, event: Event) -> bool:
        """This rule alone, without the index (for tests and tooling)."""
        program = self.programs.get(event.type)
        return program is not None and program(event)


class _SideIndex:
    def __init__(self) -> None:
        self.paths: dict[str, list[int]] = {}
        self.names: dict[str, list[int]] = {}
        self.parents: dict[str, list[int]] = {}
        self.ancestors: dict[str, list[int]] = {}

    def add(self, approvers: PathSet, position: int) -> None:
        for table, keys in (
            (self.paths, approvers.paths),
            (self.names, approvers.basenames),
            (self.parents, approvers.parent_dirs),
            (self.ancestors, approvers.ancestor_dirs),
        ):
            for key in keys:
                table.setdefault(key, []).append(position)

    def __bool__(self) -> bool:
        return bool(self.paths or self.names or self.parents or self.ancestors)

    def collect(self, path: str, out: list[int]) -> None:
        hit = self.paths.get(path)
        if hit:
            out += hit
        head, _, name = path.rpartition("/")
        hit = self.names.get(name)
        if hit:
            out += hit
        if self.parents:
            hit = self.parents.get(head or "/")
            if hit:
                out += hit
        if self.ancestors:
            while head:
                hit = self.ancestors.get(head)
                if hit:
                    out += hit
                head = head.rpartition("/")[0]


class _TypeIndex:
    """The enabled rules of one event type, and which of them an event's paths select."""

    def __init__(self) -> None:
        self.programs: list[Program] = []
        self.matches: list[Match] = []
        self.always: list[int] = []
        self.file = _SideIndex()
        self.destination = _SideIndex()

    def add(self, rule: Rule, event_type: EventType, match: Match) -> None:
        position = len(self.programs)
        self.programs.append(rule.programs[event_type])
        self.matches.append(match)
        paths = rule.filters[event_type].paths
        if paths is None:
            self.always.append(position)
            return
        self.file.add(paths.file, position)
        self.destination.add(paths.destination, position)

    def evaluate(self, event: Event) -> list[Match]:
        found: list[int] = []
        self.file.collect(event.file.path, found)
        if self.destination:
            dest = getattr(event.details, "destination", None)
            if dest is not None:
                self.destination.collect(dest.path, found)
        if not found:
            if not self.always:
                return []
            candidates: Iterable[int] = self.always
        else:
            candidates = sorted(set(found).union(self.always))
        programs, matches = self.programs, self.matches
        return [matches[i] for i in candidates if programs[i](event)]


class RuleSet:
    def __init__(self, rules: list[Rule], files: list[str] | None = None):
        self.all_rules = rules
        self.rules = [r for r in rules if not r.disabled]
        self.files = files or []
        self._index: dict[EventType, _TypeIndex] = {}
        self._conditions: dict[EventType, list[Cond]] = {}
        self._filters: dict[EventType, list[tuple[str, Filter]]] = {}
        for rule in self.rules:
            match = rule.to_match()
            for t in sorted(rule.event_types, key=list(EventType).index):
                self._index.setdefault(t, _TypeIndex()).add(rule, t, match)
                self._conditions.setdefault(t, []).append(rule.conditions[t])
                self._filters.setdefault(t, []).append((rule.id, rule.filters[t]))
        self._approvers: dict[EventType, Approvers] = {}
        self._discarders: dict[tuple[EventType, str, str], bool] = {}

    # --- loading ----------------------------------------------------------------------------

    @classmethod
    def load(
        cls,
        paths: Iterable[str | Path],
        known_actions: Mapping[str, object] | None = None,
        fields: FieldRegistry | None = None,
    ) -> RuleSet:
        """Load and compose policy files (directories: their *.yaml in name order). Raises
        PolicyError with every problem found, each at file:line:col. `fields`: the standard fields
        unless given (an agent with plugins passes its extended registry)."""
        files, errors = policy_files(list(paths))
        policies: list[PolicyFile] = []
        for path in files:
            try:
                text = read_policy_text(path)
            except (OSError, UnicodeDecodeError, ValueError) as e:
                errors.append(RuleError(f"cannot read: {e}", str(path)))
                continue
            policy, errs = parse_policy(text, str(path), known_actions)
            policies.append(policy)
            errors.extend(errs)
        return cls._build(policies, errors, [str(f) for f in files], fields or standard_fields())

    @classmethod
    def from_text(
        cls,
        *texts: str,
        filename: str = "<string>",
        known_actions: Mapping[str, object] | None = None,
        fields: FieldRegistry | None = None,
    ) -> RuleSet:
        """Compose policies given as YAML text (file names `<string>`, `<string>#2`, ...)."""
        policies: list[PolicyFile] = []
        errors: list[RuleError] = []
        for i, text in enumerate(texts):
            name = filename if i == 0 else f"{filename}#{i + 1}"
            policy, errs = parse_policy(text, name, known_actions)
            policies.append(policy)
            errors.extend(errs)
        return cls._build(policies, errors, [], fields or standard_fields())

    @classmethod
    def _build(
        cls, policies: list[PolicyFile], errors: list[RuleError], files: list[str], fields: FieldRegistry
    ) -> RuleSet:
        macros, rules = _compose(policies, errors)
        defs = _compile_macros(macros, errors, fields)
        compiled = [r for r in (_compile_rule(raw, defs, errors, fields) for raw in rules) if r is not None]
        if errors:
            raise PolicyError(errors)
        return cls(compiled, files)

    # --- queries ----------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.rules)

    def __iter__(self):
        return iter(self.rules)

    def get(self, rule_id: str) -> Rule | None:
        return next((r for r in self.all_rules if r.id == rule_id), None)

    def event_types(self) -> set[EventType]:
        """Event types some enabled rule can match: the kernel attaches only these."""
        return set(self._index)

    def rules_for(self, event_type: EventType) -> list[Rule]:
        return [r for r in self.rules if event_type in r.event_types]

    def evaluate(self, event: Event) -> list[Match]:
        index = self._index.get(event.type)
        return index.evaluate(event) if index is not None else []

    def approvers(self, event_type: EventType | str) -> Approvers:
        event_type = EventType(event_type)
        got = self._approvers.get(event_type)
        if got is None:
            got = self._approvers[event_type] = build_approvers(event_type, self._filters.get(event_type, []))
        return got

    def is_discarder(self, event_type: EventType | str, field: str, value: str) -> bool:
        """True only if no enabled rule of the type can match an event whose `field` has `value`.

        field: "file.path", "file.name", "file.directory" (the event's file is anywhere below it),
        and the same for "destination."; other fields are never discarders."""
        event_type = EventType(event_type)
        key = (event_type, field, value)
        cached = self._discarders.get(key)
        if cached is not None:
            return cached
        parsed = parse_field(field)
        if parsed is None:
            return False
        known = Known(parsed[0], parsed[1], value)
        result = not any(can_match(cond, known) for cond in self._conditions.get(event_type, []))
        if len(self._discarders) >= _DISCARDER_CACHE_MAX:
            self._discarders.clear()
        self._discarders[key] = result
        return result


# --- composition and compilation --------------------------------------------------------------


def _where(doc_index: tuple[object, int]) -> str:
    doc, index = doc_index
    err = doc.error("", index)  # type: ignore[attr-defined]
    return f"{err.file}:{err.line}"


def _compose(
    policies: list[PolicyFile], errors: list[RuleError]
) -> tuple[dict[str, RawMacro], list[RawRule]]:
    macros: dict[str, RawMacro] = {}
    rules: dict[str, RawRule] = {}
    for policy in policies:
        for m in policy.macros:
            old = macros.get(m.id)
            if old is not None and not m.override:
                errors.append(
                    m.doc.error(
                        f"duplicate macro id '{m.id}' (first at {_where((old.doc, old.index))}); "
                        "add `override: true` to replace it",
                        m.index,
                    )
                )
                continue
            macros[m.id] = m
        for r in policy.rules:
            old_rule = rules.get(r.id)
            if old_rule is None:
                if r.expression is None:
                    if r.override:  # the missing expression was not reported: it was allowed
                        errors.append(r.doc.error(f"rule '{r.id}' overrides no earlier rule", r.index))
                    continue
                rules[r.id] = r
            elif r.override:
                rules[r.id] = _merge(old_rule, r)
            else:
                errors.append(
                    r.doc.error(
                        f"duplicate rule id '{r.id}' (first at {_where((old_rule.doc, old_rule.index))}); "
                        "add `override: true` to replace it",
                        r.index,
                    )
                )
    return macros, list(rules.values())


def _merge(old: RawRule, new: RawRule) -> RawRule:
    """An override replaces the keys it sets and inherits the others."""
    changes = {
        name: getattr(new, name)
        for name in ("expression", "description", "severity", "tags", "actions", "disabled")
        if getattr(new, name) is not None
    }
    return replace(old, doc=new.doc, index=new.index, ruleset=new.ruleset, **changes)


def _macro_id_problem(ident: str, fields: FieldRegistry) -> str | None:
    if ident in _KEYWORDS:
        return f"macro id '{ident}' is a keyword"
    if ident in fields:
        return f"macro id '{ident}' is a field name"
    if ident in ALL_CONSTANTS:
        return f"macro id '{ident}' is a constant"
    return None


def _compile_macros(
    macros: dict[str, RawMacro], errors: list[RuleError], fields: FieldRegistry
) -> dict[str, MacroDef]:
    defs: dict[str, MacroDef] = {}
    for ident, raw in macros.items():
        problem = _macro_id_problem(ident, fields)
        if problem:
            errors.append(raw.doc.error(problem, raw.index))
            continue
        if raw.values is not None:
            defs[ident] = MacroDef(ident, values=raw.values)
            continue
        assert raw.expression is not None
        try:
            defs[ident] = MacroDef(ident, expression=syn.parse(raw.expression.text))
        except ExpressionError as e:
            errors.append(raw.expression.error(e.message, e.pos))
            defs[ident] = MacroDef(ident, broken=True)
    broken = set()
    for ident, raw in macros.items():
        if ident in defs and raw.expression is not None and not defs[ident].broken:
            try:
                check_macro(raw.expression.text, defs, fields)
            except ExpressionError as e:
                errors.append(raw.expression.error(e.message, e.pos))
                broken.add(ident)
    return {i: replace(d, broken=True) if i in broken else d for i, d in defs.items()}


def _compile_rule(
    raw: RawRule, macros: dict[str, MacroDef], errors: list[RuleError], fields: FieldRegistry
) -> Rule | None:
    assert raw.expression is not None
    try:
        compiled = compile_expression(raw.expression.text, macros, fields)
    except ExpressionError as e:
        errors.append(raw.expression.error(e.message, e.pos))
        return None
    rule = Rule(
        id=raw.id,
        expression=raw.expression.text.strip(),
        kind=str(compiled.kind),
        event_types=compiled.event_types,
        severity=raw.severity or DEFAULT_SEVERITY,
        description=(raw.description or "").strip(),
        tags=raw.tags or {},
        actions=raw.actions or (),
        ruleset=raw.ruleset,
        file=raw.doc.name,
        line=raw.line,
        disabled=bool(raw.disabled),
    )
    for t, cond in compiled.per_type.items():
        rule.conditions[t] = cond
        rule.programs[t] = compile_cond(cond)
        rule.filters[t] = analyze(cond)
    return rule
