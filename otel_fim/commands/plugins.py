"""`otel-fim plugins list`: every plugin found, where it comes from, and what it provides."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any

from otel_fim.config import AgentConfig, ConfigError, load_config
from otel_fim.plugin.manager import PluginError, load_plugins


def add_plugins_commands(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("plugins", help="list the plugins and what they provide")
    sub = p.add_subparsers(dest="plugins_command", required=True)
    ls = sub.add_parser("list", help="show every plugin found, where it comes from, and its hooks")
    ls.add_argument("--config", metavar="FILE", help="agent config file (plugins.enable/disable/config)")
    ls.set_defaults(func=run_list)


def run_list(args: argparse.Namespace, out: Any = None) -> int:
    out = out or sys.stdout
    try:
        config = load_config(args.config) if args.config else AgentConfig()
    except ConfigError as exc:
        print(f"otel-fim: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    # Startup hooks create state directories; listing must not need the real state dir to exist.
    if not os.access(config.state_dir, os.W_OK):
        config.state_dir = os.path.join(os.environ.get("TMPDIR", "/tmp"), "otel-fim-plugins-list")
    try:
        plugins = load_plugins(config)
    except PluginError as exc:
        print(f"otel-fim: {exc}", file=sys.stderr)
        return 2
    try:
        for info in plugins.infos.values():
            print(f"{info.name}  [{info.source}, {info.status}]", file=out)
            print(f"  from: {info.where}", file=out)
            if info.hooks:
                print(f"  hooks: {', '.join(h.removeprefix('otel_fim_') for h in info.hooks)}", file=out)
            if info.actions:
                print(f"  actions: {', '.join(info.actions)}", file=out)
            if info.fields:
                print(f"  fields: {', '.join(info.fields)}", file=out)
    finally:
        plugins.shutdown()
    return 0
