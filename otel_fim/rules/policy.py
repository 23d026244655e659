"""Policy files (YAML) → raw macros and rules that still remember where each piece was written.

The file is *composed* (not loaded) so every node keeps its marks; an expression keeps a map from
each character of its value to its offset in the file, which makes errors inside block scalars
(`|`, `>`) and quoted strings land on the right line and column. Every structural problem is
collected; nothing stops at the first.

    version: 1
    macros:
      - id: package_managers
        values: [dpkg, apt, rpm]
      - id: by_package_manager
        expression: process.comm in package_managers
    rules:
      - id: passwd_written
        expression: fim.write.file.path == "/etc/passwd" && !by_package_manager
        description: ...
        severity: high            # info | low | medium | high | critical
        tags: {mitre: T1098, tactic: persistence}
        actions: [{kill: {signal: SIGKILL}}]
        disabled: false
        override: true            # replace an earlier rule with this id (unset keys are inherited)
"""

from __future__ import annotations

import bisect
import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from otel_fim import bounded_yaml
from otel_fim.rules import parser as syn
from otel_fim.rules.errors import RuleError
from otel_fim.rules.limits import MAX_LIST_ITEMS
from otel_fim.rules.match import SEVERITIES

TOP_KEYS = ("version", "macros", "rules")
MACRO_KEYS = ("id", "expression", "values", "description", "override")
RULE_KEYS = ("id", "expression", "description", "severity", "tags", "actions", "disabled", "override")
RULE_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*\Z")
MACRO_ID = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


@dataclass(frozen=True)
class SourceDoc:
    """One policy file's text, for turning offsets into line:col and the caret's source line."""

    name: str
    text: str
    line_starts: tuple[int, ...] = field(init=False)

    def __post_init__(self) -> None:
        starts = [0] + [i + 1 for i, ch in enumerate(self.text) if ch == "\n"]
        object.__setattr__(self, "line_starts", tuple(starts))

    def error(self, message: str, index: int) -> RuleError:
        line = bisect.bisect_right(self.line_starts, index)  # 1-based
        start = self.line_starts[line - 1]
        end = self.text.find("\n", start)
        source = self.text[start : end if end >= 0 else len(self.text)]
        return RuleError(message, self.name, line, index - start + 1, source)

    def at(self, message: str, node: Node) -> RuleError:
        return self.error(message, node.start_mark.index)


@dataclass(frozen=True)
class ExprSource:
    """An expression's text plus, for each character, its offset in the file."""

    text: str
    doc: SourceDoc
    offsets: tuple[int, ...]

    def error(self, message: str, pos: int) -> RuleError:
        pos = max(0, min(pos, len(self.offsets) - 1))
        return self.doc.error(message, self.offsets[pos])


def _align(value: str, raw: str, base: int) -> tuple[int, ...]:
    """Map each character of a scalar's value to its offset in the raw text (plus one past the end).

    Greedy: the raw text holds the same characters in the same order plus quotes, escapes,
    indentation and line breaks that folding turned into spaces."""
    out: list[int] = []
    j = 0
    for ch in value:
        while j < len(raw) and raw[j] != ch and not (ch == " " and raw[j] == "\n"):
            j += 1
        if j >= len(raw):  # an escape we could not follow: point at the scalar's start
            out.extend([base] * (len(value) - len(out)))
            break
        out.append(base + j)
        j += 1
    end = out[-1] + 1 if out else base
    out.append(end)
    return tuple(out)


@dataclass
class RawMacro:
    id: str
    doc: SourceDoc
    index: int  # where the macro's mapping starts
    expression: ExprSource | None = None
    values: tuple[syn.Node, ...] | None = None
    override: bool = False


@dataclass
class RawRule:
    id: str
    doc: SourceDoc
    index: int
    ruleset: str
    expression: ExprSource | None = None
    description: str | None = None
    severity: str | None = None
    tags: dict[str, str] | None = None
    actions: tuple[dict[str, dict], ...] | None = None
    disabled: bool | None = None
    override: bool = False

    @property
    def line(self) -> int:
        return self.doc.error("", self.index).line


@dataclass
class PolicyFile:
    path: str
    name: str  # the file's stem: Match.ruleset
    version: object = None
    macros: list[RawMacro] = field(default_factory=list)
    rules: list[RawRule] = field(default_factory=list)


class _Reader:
    def __init__(self, doc: SourceDoc, name: str, known_actions: Mapping[str, object] | None):
        self.doc = doc
        self.name = name
        self.known_actions = known_actions
        self.errors: list[RuleError] = []
        self._construct = SafeConstructor()

    def err(self, message: str, node: Node) -> None:
        self.errors.append(self.doc.at(message, node))

    def py(self, node: Node) -> object:
        return self._construct.construct_object(node, deep=True)

    # --- shapes ---------------------------------------------------------------------------

    def mapping(self, node: Node, allowed: tuple[str, ...], what: str) -> dict[str, Node] | None:
        if not isinstance(node, MappingNode):
            self.err(f"{what} must be a mapping", node)
            return None
        out: dict[str, Node] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, ScalarNode) else None
            if key is None:
                self.err(f"{what} keys must be plain names", key_node)
            elif key in out:
                self.err(f"duplicate key '{key}' in {what}", key_node)
            elif key not in allowed:
                close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
                hint = f" (did you mean '{close[0]}'?)" if close else f"; known keys: {', '.join(allowed)}"
                self.err(f"unknown key '{key}' in {what}{hint}", key_node)
            else:
                out[key] = value_node
        return out

    def sequence(self, node: Node, what: str) -> list[Node]:
        if isinstance(node, ScalarNode) and node.tag.endswith(":null"):
            return []
        if not isinstance(node, SequenceNode):
            self.err(f"'{what}' must be a list", node)
            return []
        return list(node.value)

    def string(self, node: Node, what: str) -> str | None:
        value = self.py(node) if isinstance(node, ScalarNode) else None
        if not isinstance(value, str):
            self.err(f"'{what}' must be a string", node)
            return None
        return value

    def boolean(self, node: Node, what: str) -> bool | None:
        value = self.py(node) if isinstance(node, ScalarNode) else None
        if not isinstance(value, bool):
            self.err(f"'{what}' must be true or false", node)
            return None
        return value

    def ident(self, keys: dict[str, Node], parent: Node, pattern: re.Pattern[str], what: str) -> str | None:
        if "id" not in keys:
            self.err(f"{what} has no 'id'", parent)
            return None
        value = self.string(keys["id"], "id")
        if value is not None and not pattern.match(value):
            self.err(f"bad {what} id {value!r}: use letters, digits and _", keys["id"])
            return None
        return value

    def expression(self, node: Node) -> ExprSource | None:
        text = self.string(node, "expression")
        if text is None:
            return None
        start, end = node.start_mark.index, node.end_mark.index
        return ExprSource(text, self.doc, _align(text, self.doc.text[start:end], start))

    # --- sections -------------------------------------------------------------------------

    def macro(self, node: Node) -> RawMacro | None:
        keys = self.mapping(node, MACRO_KEYS, "a macro")
        if keys is None:
            return None
        ident = self.ident(keys, node, MACRO_ID, "macro")
        has_expr, has_values = "expression" in keys, "values" in keys
        if has_expr == has_values:
            self.err("a macro needs exactly one of 'expression' or 'values'", node)
            return None
        if ident is None:
            return None
        macro = RawMacro(ident, self.doc, node.start_mark.index)
        macro.override = bool("override" in keys and self.boolean(keys["override"], "override"))
        if has_expr:
            macro.expression = self.expression(keys["expression"])
            return macro if macro.expression is not None else None
        macro.values = self.values(keys["values"])
        return macro if macro.values is not None else None

    def values(self, node: Node) -> tuple[syn.Node, ...] | None:
        items: list[syn.Node] = []
        kinds = set()
        if isinstance(node, SequenceNode) and len(node.value) > MAX_LIST_ITEMS:
            self.err(f"the list has {len(node.value)} values; at most {MAX_LIST_ITEMS} are allowed", node)
            return None
        for item in self.sequence(node, "values"):
            value = self.py(item) if isinstance(item, ScalarNode) else None
            if isinstance(value, bool) or not isinstance(value, str | int):
                self.err("macro values must be strings or integers", item)
                return None
            kinds.add(type(value))
            items.append(syn.Str(0, value) if isinstance(value, str) else syn.Int(0, value))
        if len(kinds) > 1:
            self.err("macro values mix strings and integers", node)
            return None
        return tuple(items)

    def rule(self, node: Node) -> RawRule | None:
        keys = self.mapping(node, RULE_KEYS, "a rule")
        if keys is None:
            return None
        ident = self.ident(keys, node, RULE_ID, "rule")
        rule = RawRule(ident or "?", self.doc, node.start_mark.index, self.name)
        if "override" in keys:
            rule.override = bool(self.boolean(keys["override"], "override"))
        if "expression" in keys:
            rule.expression = self.expression(keys["expression"])
        elif not rule.override:
            self.err(f"rule '{rule.id}' has no 'expression'", node)
        if "description" in keys:
            rule.description = self.string(keys["description"], "description")
        if "severity" in keys:
            rule.severity = self.severity(keys["severity"])
        if "tags" in keys:
            rule.tags = self.tags(keys["tags"])
        if "actions" in keys:
            rule.actions = self.actions(keys["actions"])
        if "disabled" in keys:
            rule.disabled = self.boolean(keys["disabled"], "disabled")
        return rule if ident is not None else None

    def severity(self, node: Node) -> str | None:
        value = self.py(node) if isinstance(node, ScalarNode) else None
        if value not in SEVERITIES:
            self.err(f"bad severity {value!r}: use one of {', '.join(SEVERITIES)}", node)
            return None
        return str(value)

    def tags(self, node: Node) -> dict[str, str] | None:
        if not isinstance(node, MappingNode):
            self.err("'tags' must be a mapping of names to values", node)
            return None
        out: dict[str, str] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode) or not isinstance(value_node, ScalarNode):
                self.err("tag names and values must be plain values", key_node)
                continue
            value = self.py(value_node)
            out[str(key_node.value)] = "" if value is None else str(value)
        return out

    def actions(self, node: Node) -> tuple[dict[str, dict], ...] | None:
        out: list[dict[str, dict]] = []
        for item in self.sequence(node, "actions"):
            name_node, params = self.action(item)
            if name_node is None:
                continue
            name = str(name_node.value)
            if self.known_actions is not None and name not in self.known_actions:
                close = difflib.get_close_matches(name, list(self.known_actions), n=1, cutoff=0.6)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                known = ", ".join(sorted(self.known_actions)) or "none"
                self.err(f"unknown action '{name}'{hint}; known actions: {known}", name_node)
                continue
            # A schema with `check(params) -> problem | None` (otel_fim.plugin_api.ActionSchema).
            check = getattr(self.known_actions.get(name), "check", None) if self.known_actions else None
            problem = check(params) if callable(check) else None
            if problem:
                self.err(f"action '{name}': {problem}", name_node)
                continue
            out.append({name: params})
        return tuple(out)

    def action(self, item: Node) -> tuple[ScalarNode | None, dict]:
        if isinstance(item, ScalarNode):
            return item, {}
        if not isinstance(item, MappingNode) or len(item.value) != 1:
            self.err("an action is `name` or `{name: {params}}`", item)
            return None, {}
        key_node, value_node = item.value[0]
        params = self.py(value_node)
        if params is None:
            params = {}
        if not isinstance(key_node, ScalarNode) or not isinstance(params, dict):
            self.err("an action is `name` or `{name: {params}}`", item)
            return None, {}
        return key_node, params

    def document(self, root: Node | None, path: str) -> PolicyFile:
        policy = PolicyFile(path, self.name)
        if root is None:
            return policy  # an empty file is an empty policy
        keys = self.mapping(root, TOP_KEYS, "a policy file")
        if keys is None:
            return policy
        if "version" in keys:
            policy.version = self.py(keys["version"])
        for item in self.sequence(keys["macros"], "macros") if "macros" in keys else []:
            macro = self.macro(item)
            if macro is not None:
                policy.macros.append(macro)
        for item in self.sequence(keys["rules"], "rules") if "rules" in keys else []:
            rule = self.rule(item)
            if rule is not None:
                policy.rules.append(rule)
        return policy


def parse_policy(
    text: str, filename: str = "<string>", known_actions: Mapping[str, object] | None = None
) -> tuple[PolicyFile, list[RuleError]]:
    """Read one policy's text; returns what could be read and every error found."""
    doc = SourceDoc(filename, text)
    name = Path(filename).stem if not filename.startswith("<") else filename.strip("<>")
    try:
        root = bounded_yaml.compose(text)
    except bounded_yaml.YamlLimitError as e:
        problem = doc.error(e.message, e.index) if e.line else RuleError(e.message, filename)
        return PolicyFile(filename, name), [problem]
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        index = mark.index if mark is not None else 0
        what = e.problem or e.context or "invalid YAML"
        return PolicyFile(filename, name), [doc.error(f"bad YAML: {what}", index)]
    except yaml.YAMLError as e:
        return PolicyFile(filename, name), [RuleError(f"bad YAML: {e}", filename)]
    reader = _Reader(doc, name, known_actions)
    policy = reader.document(root, filename)
    return policy, reader.errors


def read_policy_text(path: Path) -> str:
    """The file's text; a file over the size bound is refused without reading all of it."""
    with path.open("rb") as f:
        data = f.read(bounded_yaml.MAX_FILE_BYTES + 1)
    if len(data) > bounded_yaml.MAX_FILE_BYTES:
        raise ValueError(f"larger than {bounded_yaml.MAX_FILE_BYTES} bytes (a policy file is a few KiB)")
    return data.decode("utf-8")


def policy_files(paths: list[str | Path]) -> tuple[list[Path], list[RuleError]]:
    """Expand directories into their *.yaml / *.yml files (sorted: composition order is stable)."""
    files: list[Path] = []
    errors: list[RuleError] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
            if not found:
                errors.append(RuleError("no *.yaml policy files in this directory", str(path)))
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            errors.append(RuleError("no such file or directory", str(path)))
    return files, errors
