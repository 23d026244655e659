"""`otel-fim` command line: `run` (the agent), `rules check|test`, `plugins list`."""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="otel-fim", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    from otel_fim.agent import add_run_command

    add_run_command(sub)
    try:
        from otel_fim.rules.cli import add_rules_commands
    except ImportError:  # rule engine not built yet
        pass
    else:
        add_rules_commands(sub)
    from otel_fim.plugin_manager import add_plugins_commands

    add_plugins_commands(sub)
    from otel_fim.spool_command import add_spool_command

    add_spool_command(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
