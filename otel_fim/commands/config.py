"""`otel-fim config check FILE`: is this config what the agent would run with? Reads it as `run`
would (every key, type and value checked, FILE:LINE:COL on a mistake), loads the rules it names
with the plugins it enables, and applies the safe-default refusal; prints what it found."""

from __future__ import annotations

import argparse
import sys
from typing import TextIO

from otel_fim import data_dir
from otel_fim.config import ConfigError, load_config
from otel_fim.export.redact import RedactionError, Redactor
from otel_fim.plugin.manager import PluginError, load_plugins
from otel_fim.rules.errors import PolicyError
from otel_fim.rules.ruleset import RuleSet


def add_config_commands(subparsers: argparse._SubParsersAction) -> None:
    config = subparsers.add_parser("config", help="check an agent config file")
    sub = config.add_subparsers(dest="config_command", required=True)
    check = sub.add_parser("check", help="validate a config file, its rules and its plugins")
    check.add_argument("file", metavar="FILE")
    check.set_defaults(func=run_check)


def run_check(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    try:
        config = load_config(args.file)
    except ConfigError as exc:
        print(f"otel-fim: {exc}", file=sys.stderr)
        return 2
    rules = [*config.rules, *([str(data_dir("otel_fim_rules", "rules"))] if config.default_rules else [])]
    if (refusal := config.refuse_export(bool(rules))) is not None:
        print(f"otel-fim: {args.file}: {refusal}", file=sys.stderr)
        return 2
    try:
        Redactor(config.redaction.enabled, config.redaction.options, config.redaction.patterns)
        plugins = load_plugins(config)
        ruleset = RuleSet.load(rules, plugins.known_actions(), plugins.fields) if rules else None
    except PolicyError as exc:
        print(exc.render(), file=sys.stderr)
        return 2
    except (RedactionError, PluginError, OSError, ValueError) as exc:
        print(f"otel-fim: {args.file}: {exc}", file=sys.stderr)
        return 2
    described = f"{len(ruleset)} from {len(ruleset.files)} file(s)" if ruleset else "none (every file event)"
    print(f"OK: {args.file}", file=out)
    print(f"  rules: {described}", file=out)
    print(f"  outputs: {', '.join(config.effective_outputs())}", file=out)
    print(f"  state_dir: {config.state_dir}", file=out)
    print(f"  redaction: {'on' if config.redaction.enabled else 'OFF'}", file=out)
    return 0
