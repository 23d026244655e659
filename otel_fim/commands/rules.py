"""`otel-fim rules check|list [PATH]...`, `otel-fim rules fields` and
`otel-fim rules test --events EVENTS.jsonl [PATH]...`."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TextIO

from otel_fim import data_dir
from otel_fim.config import AgentConfig
from otel_fim.constants import OPEN_FLAGS
from otel_fim.event import EventType
from otel_fim.export.record import AgentRecord, RecordError, event_from_record, summary
from otel_fim.kernel import io_uring
from otel_fim.plugin.manager import load_plugins
from otel_fim.rules.approvers import Approvers, PathSet
from otel_fim.rules.errors import PolicyError
from otel_fim.rules.ruleset import RuleSet

# The default policy installed with the package (rules/ of the source tree), not ./rules.
DEFAULT_PATHS = [str(data_dir("otel_fim_rules", "rules"))]


def add_rules_commands(subparsers: argparse._SubParsersAction) -> None:
    rules = subparsers.add_parser("rules", help="validate and try out rule policies")
    sub = rules.add_subparsers(dest="rules_command", required=True)

    check = sub.add_parser("check", help="validate policies; show rules and approvers per event type")
    check.add_argument(
        "paths", nargs="*", metavar="PATH", help="policy files or directories (default: the installed policy)"
    )
    check.set_defaults(func=run_check)

    listing = sub.add_parser("list", help="one line per rule: id, severity, event types, description")
    listing.add_argument("paths", nargs="*", metavar="PATH", help="policy files or directories")
    listing.set_defaults(func=run_list)

    fields = sub.add_parser("fields", help="every field a rule may use: type, event types, kernel filter")
    fields.set_defaults(func=run_fields)

    test = sub.add_parser("test", help="evaluate recorded events (the agent's jsonl output) against policies")
    test.add_argument("--events", required=True, metavar="EVENTS.jsonl", help="jsonl file, '-' for stdin")
    test.add_argument(
        "paths", nargs="*", metavar="PATH", help="policy files or directories (default: the installed policy)"
    )
    test.add_argument("--only-matches", action="store_true", help="print only events some rule matches")
    test.set_defaults(func=run_test)


def _load(paths: list[str]) -> RuleSet | None:
    # The plugins as the agent would load them (default config): rules may use their fields, and
    # their actions' parameters are checked.
    plugins = load_plugins(AgentConfig())
    try:
        return RuleSet.load(paths or DEFAULT_PATHS, plugins.known_actions(), plugins.fields)
    except PolicyError as e:
        print(e.render(), file=sys.stderr)
        count = len(e.errors)
        print(f"{count} error{'s' if count != 1 else ''}", file=sys.stderr)
        return None


def _set_text(label: str, values: frozenset[str]) -> str | None:
    if not values:
        return None
    return f"{label}: " + ", ".join(sorted(values))


def _path_lines(prefix: str, s: PathSet) -> list[str]:
    lines = [
        _set_text("paths", s.paths),
        _set_text("basenames", s.basenames),
        _set_text("parent dirs", s.parent_dirs),
        _set_text("ancestor dirs", s.ancestor_dirs),
    ]
    return [f"{prefix}{line}" for line in lines if line]


def mask_text(mask: int) -> str:
    """`O_WRONLY|O_CREAT|...`: one name per set bit (O_TMPFILE's own bit is `__O_TMPFILE`)."""
    names = {bit: name for name, bit in OPEN_FLAGS.items() if bit and bit & (bit - 1) == 0}
    names[OPEN_FLAGS["O_TMPFILE"] & ~OPEN_FLAGS["O_DIRECTORY"]] = "__O_TMPFILE"
    out = [names.get(1 << i, oct(1 << i)) for i in range(mask.bit_length()) if mask >> i & 1]
    return "|".join(out) or "none"


def describe_approvers(a: Approvers) -> list[str]:
    lines: list[str] = []
    if a.flags_any is not None:
        gate = mask_text(a.flags_any)
        lines.append(f"open flags: any of {gate}" + (" or read-only" if a.allow_rdonly else ""))
    if a.accept_all:
        lines.append(f"accept all paths: {a.reason}")
        return lines
    lines += _path_lines("", a.file)
    lines += _path_lines("destination ", a.destination)
    if a.values.mode_any:
        lines.append(f"or any path when mode has any of {a.values.mode_any:#o}")
    if a.values.xattr_names:
        lines.append("or any path when the xattr is " + ", ".join(sorted(a.values.xattr_names)))
    return lines


def run_check(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    ruleset = _load(args.paths)
    if ruleset is None:
        return 1
    disabled = len(ruleset.all_rules) - len(ruleset)
    files = len(ruleset.files)
    print(
        f"OK: {len(ruleset)} rules ({disabled} disabled) from {files} file{'s' if files != 1 else ''}",
        file=out,
    )
    # Types with the same rules and approvers (fim.write rules give many) are printed once.
    groups: dict[tuple[tuple[str, ...], tuple[str, ...]], list[str]] = {}
    for event_type in EventType:
        rules = tuple(r.id for r in ruleset.rules_for(event_type))
        if rules:
            lines = tuple(describe_approvers(ruleset.approvers(event_type)))
            groups.setdefault((rules, lines), []).append(event_type.value)
    for (rules, lines), types in groups.items():
        print(f"\n{', '.join(types)}: {len(rules)} rule{'s' if len(rules) != 1 else ''}", file=out)
        print("  rules: " + ", ".join(rules), file=out)
        for line in lines:
            print(f"  approvers {line}", file=out)
    unused = [t.value for t in EventType if t not in ruleset.event_types()]
    if unused:
        print(f"\nno rules (not attached): {', '.join(unused)}", file=out)
    print("\nkernel on this host:", file=out)
    for line in io_uring.probe_host().describe():  # what the rules cannot see here
        print(f"  {line}", file=out)
    return 0


def run_list(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    ruleset = _load(args.paths)
    if ruleset is None:
        return 1
    for rule in ruleset.all_rules:
        types = "write" if rule.kind == "fim.write" else ",".join(sorted(t.value for t in rule.event_types))
        state = " (disabled)" if rule.disabled else ""
        print(f"{rule.id}\t{rule.severity}\t{types}\t{rule.description}{state}", file=out)
    return 0


def run_fields(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Per-type fields (`open.file.path`, ...) are grouped: `<type>.file.path` with the types that
    have it. `kernel` marks the fields the kernel filter can use (approvers, discarders)."""
    out = out or sys.stdout
    registry = load_plugins(AgentConfig()).fields  # the standard fields and the plugins'
    grouped: dict[tuple[str, str, bool, str], list[str]] = {}
    for field in registry:
        if field.event_type is None:
            name, types = field.name, ["every"]
        else:
            name = "<type>" + field.name[len(field.event_type.value) :]
            types = [field.event_type.value]
        key = (name, field.type.value, field.key is not None, field.doc)
        grouped.setdefault(key, []).extend(types)
    print("field\ttype\tevent types\tkernel filter\tmeaning", file=out)
    for (name, ftype, kernel, doc), types in sorted(grouped.items()):
        print(f"{name}\t{ftype}\t{','.join(types)}\t{'yes' if kernel else 'no'}\t{doc}", file=out)
    return 0


def run_test(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    ruleset = _load(args.paths)
    if ruleset is None:
        return 1
    stream = sys.stdin if args.events == "-" else open(args.events, encoding="utf-8")
    total = matched = bad = 0
    with stream:
        for lineno, line in enumerate(stream, 1):
            if not line.strip():
                continue
            try:
                event = event_from_record(json.loads(line))
            except AgentRecord:
                continue  # the agent's own records (coverage gaps, scans, canary) are not events
            except (json.JSONDecodeError, RecordError) as e:
                print(f"{args.events}:{lineno}: skipped: {e}", file=sys.stderr)
                bad += 1
                continue
            total += 1
            matches = ruleset.evaluate(event)
            matched += bool(matches)
            if matches:
                ids = ", ".join(f"{m.rule_id} ({m.severity})" for m in matches)
                print(f"{lineno}: MATCH {ids}: {summary(event)}", file=out)
            elif not args.only_matches:
                print(f"{lineno}: -     {summary(event)}", file=out)
    print(f"\n{total} events, {matched} matched, {total - matched} not matched, {bad} skipped", file=out)
    return 1 if bad else 0
