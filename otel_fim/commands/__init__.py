"""`otel-fim` command line: `run` (the agent), `rules check|list|fields|test`, `plugins list`,
`config check`, `spool`. One module per
command; each parses its flags and calls the engines, which import nothing from here."""

from __future__ import annotations

import argparse
import sys

import otel_fim
from otel_fim.commands.config import add_config_commands
from otel_fim.commands.plugins import add_plugins_commands
from otel_fim.commands.rules import add_rules_commands
from otel_fim.commands.run import add_run_command
from otel_fim.commands.spool import add_spool_command


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="otel-fim", description=__doc__)
    parser.add_argument("--version", action="version", version=f"otel-fim {otel_fim.__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    add_run_command(sub)
    add_rules_commands(sub)
    add_plugins_commands(sub)
    add_config_commands(sub)
    add_spool_command(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
