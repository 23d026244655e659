"""`otel-fim spool`: what the OTLP spool holds, and the poison records the receiver refused.

    otel-fim spool status                 # records waiting, pending enrichment, dead letters
    otel-fim spool list [--limit N]       # dead letters: id, when, severity, why, the record's body
    otel-fim spool requeue (--all | ID...) # send them again (e.g. after fixing the receiver)
    otel-fim spool purge (--all | ID...)   # forget them

It opens `<state_dir>/spool.db` (from `--state-dir`, else `--config`'s `state_dir`, else the
default). SQLite's WAL lets it run next to the agent; a requeue is picked up by the running agent
at its next batch.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from otel_fim.config import DEFAULT_STATE_DIR, ConfigError, load_config
from otel_fim.export.spool import SPOOL_FILE, Spool, SpoolError


def add_spool_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("spool", help="inspect the OTLP spool and its dead letters", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--state-dir", metavar="DIR", help=f"the agent's state directory ({DEFAULT_STATE_DIR})")
    p.add_argument("--config", metavar="FILE", help="take state_dir from this config file")
    actions = p.add_subparsers(dest="spool_action", required=True)
    actions.add_parser("status", help="counts")
    listing = actions.add_parser("list", help="list dead letters")
    listing.add_argument("--limit", type=int, default=100)
    for name, text in (("requeue", "send dead letters again"), ("purge", "forget dead letters")):
        action = actions.add_parser(name, help=text)
        action.add_argument("ids", nargs="*", type=int, metavar="ID")
        action.add_argument("--all", action="store_true", help="every dead letter")
    p.set_defaults(func=run_spool)


def _state_dir(args: argparse.Namespace) -> Path:
    if args.state_dir:
        return Path(args.state_dir)
    if args.config:
        return Path(load_config(args.config).state_dir)
    return Path(DEFAULT_STATE_DIR)


def run_spool(args: argparse.Namespace) -> int:
    try:
        path = _state_dir(args) / SPOOL_FILE
    except (ConfigError, OSError) as exc:
        print(f"otel-fim: {exc}", file=sys.stderr)
        return 2
    if not path.exists():
        print(f"otel-fim: no spool at {path}", file=sys.stderr)
        return 1
    try:
        spool = Spool(path)
    except SpoolError as exc:
        print(f"otel-fim: {exc}", file=sys.stderr)
        return 1
    try:
        return _act(spool, args, path)
    finally:
        spool.close()


def _act(spool: Spool, args: argparse.Namespace, path: Path) -> int:
    action = args.spool_action
    if action == "status":
        print(f"spool: {path}")
        print(f"spooled: {spool.depth()} (pending enrichment: {len(spool.pending())})")
        print(f"dead letters: {spool.dead_letter_count()}")
        return 0
    if action == "list":
        for dead in spool.dead_letters(args.limit):
            print(_describe(dead.id, dead.failed_ns, dead.severity, dead.reason, dead.payload))
        return 0
    if not args.all and not args.ids:
        print(f"otel-fim: spool {action}: name dead-letter ids, or --all", file=sys.stderr)
        return 2
    ids = None if args.all else args.ids
    if action == "requeue":
        print(f"requeued {spool.requeue_dead_letters(ids)} record(s)")
    else:
        print(f"purged {spool.purge_dead_letters(ids)} record(s)")
    return 0


def _describe(row_id: int, failed_ns: int, severity: int, reason: str, payload: str) -> str:
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(failed_ns / 1e9))
    try:
        body = str(json.loads(payload).get("body", ""))
    except (ValueError, AttributeError):
        body = "(unreadable record)"
    # Bodies hold attacker-chosen file names: one line each, control characters escaped.
    line = f"{row_id} {when} severity={severity} {body!r} -- {reason}"
    return line.replace("\n", "\\n")
