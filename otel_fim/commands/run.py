"""`otel-fim run`: the agent's flags, merged over the config file (flags win)."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys

from otel_fim import data_dir
from otel_fim.agent import run_agent
from otel_fim.config import DEFAULT_STATE_DIR, AgentConfig, ConfigError, load_config
from otel_fim.export.endpoint import PROTOCOLS
from otel_fim.kernel.sensor import DEFAULT_BACKLOG_MIB, DEFAULT_RINGBUF_PAGES


def add_run_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run the agent", description="Attach the sensor and report file events.")
    # Defaults are None (or empty): an unset flag leaves the config file's value alone.
    p.add_argument(
        "--rules",
        action="append",
        default=[],
        metavar="PATH",
        help="policy file or directory (repeatable); without rules every file event is reported",
    )
    p.add_argument(
        "--output",
        action="append",
        default=[],
        metavar="SPEC",
        help="console | jsonl:PATH | otlp (repeatable; default: otlp when an endpoint is set, else console)",
    )
    p.add_argument(
        "--default-rules",
        action="store_const",
        const=True,
        help="also load the default policy installed with otel-fim",
    )
    p.add_argument(
        "--log-level",
        choices=("debug", "info", "warning", "error"),
        help="log verbosity on stderr (default info; -v is debug)",
    )
    p.add_argument(
        "--all-events",
        action="store_const",
        const=True,
        help="without rules, export every file event over OTLP too (refused otherwise)",
    )
    p.add_argument("--duration", type=float, metavar="SECONDS", help="stop after this long")
    p.add_argument("--ready-file", metavar="PATH", help="created once every program is attached")
    p.add_argument("--stats-file", metavar="PATH", help="write the final counters here as JSON on exit")
    p.add_argument(
        "--status-interval",
        type=float,
        metavar="SECONDS",
        help="print a status line this often on stderr (default 30; 0: never)",
    )
    p.add_argument(
        "--no-kernel-filter",
        dest="kernel_filter",
        action="store_const",
        const=False,
        help="send every file event to user space (comparison and debugging)",
    )
    p.add_argument(
        "--ringbuf-pages",
        type=power_of_two,
        help=f"the kernel's ring buffer in 4 KiB pages, a power of two (default {DEFAULT_RINGBUF_PAGES})",
    )
    p.add_argument(
        "--backlog-mib",
        type=positive_int,
        help=f"MiB for records read from the kernel, not yet handled (default {DEFAULT_BACKLOG_MIB})",
    )
    p.add_argument(
        "--coalesce-ms",
        type=window_ms,
        help="identical repeats (same thread, operation, file, arguments, result) within this window "
        "are one record plus a count (default 250; 0: off)",
    )
    p.add_argument("-v", "--verbose", action="store_true")
    add_config_arguments(p)
    p.set_defaults(func=run)


def window_ms(text: str) -> int:
    """argparse type for --coalesce-ms: 0 (off) to 60000."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if not 0 <= value <= 60_000:
        raise argparse.ArgumentTypeError(f"must be 0-60000 ms, got {value}")
    return value


def positive_int(text: str) -> int:
    """argparse type: 0 would make the setting useless (a backlog of 0 never reads the kernel)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def power_of_two(text: str) -> int:
    value = positive_int(text)
    if value & (value - 1):
        raise argparse.ArgumentTypeError(f"must be a power of two (the kernel's rule), got {value}")
    return value


def run(args: argparse.Namespace) -> int:
    try:
        config = merge_cli(load_config(args.config) if args.config else AgentConfig(), args)
    except (ConfigError, OSError) as exc:
        print(f"otel-fim: {exc}", file=sys.stderr)
        return 2
    if config.default_rules:  # the policy installed with the package, besides any --rules
        config.rules = [*config.rules, str(data_dir("otel_fim_rules", "rules"))]
    level = logging.DEBUG if args.verbose else getattr(logging, config.log_level.upper())
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    return run_agent(config)


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """The config file and OTLP flags. Defaults are None: an unset flag leaves the file's value alone."""
    parser.add_argument("--config", metavar="FILE", help="YAML config file (flags override it)")
    parser.add_argument("--state-dir", metavar="DIR", help=f"spool directory (default {DEFAULT_STATE_DIR})")
    g = parser.add_argument_group("OTLP export (the standard OTEL_EXPORTER_OTLP_* variables apply too)")
    g.add_argument("--otlp-endpoint", metavar="URL", help="collector base URL, e.g. http://collector:4318")
    g.add_argument(
        "--otlp-protocol", choices=PROTOCOLS, help="default: OTEL_EXPORTER_OTLP_PROTOCOL or http/protobuf"
    )
    g.add_argument("--otlp-header", action="append", metavar="KEY=VALUE", help="repeatable")
    g.add_argument("--otlp-timeout", type=float, metavar="SECONDS")
    g.add_argument("--otlp-insecure", action="store_true", default=None, help="gRPC without TLS")
    g.add_argument("--metrics-interval", type=float, metavar="SECONDS", help="metric export interval")
    g.add_argument("--no-metrics", action="store_true", default=None, help="do not export metrics")
    s = parser.add_argument_group("baseline, scans and the liveness canary")
    s.add_argument("--scan-interval", type=float, metavar="SECONDS", help="periodic scans (default 0: none)")
    s.add_argument("--no-scan", action="store_true", default=None, help="no baseline, no scans")
    s.add_argument("--no-canary", action="store_true", default=None, help="no liveness canary")


# CLI attribute -> config attribute path. Top-level fields with the same name map themselves.
_CLI_MAP = {
    "otlp_endpoint": "otlp.endpoint",
    "otlp_protocol": "otlp.protocol",
    "otlp_timeout": "otlp.timeout",
    "otlp_insecure": "otlp.insecure",
    "metrics_interval": "otlp.metrics_interval",
    "scan_interval": "scan.interval",
}
_LIST_FLAGS = {"rules", "outputs", "output"}


def merge_cli(config: AgentConfig, args: argparse.Namespace) -> AgentConfig:
    """A copy of `config` with every flag that was given (not None, not empty) applied over it."""
    merged = dataclasses.replace(
        config,
        otlp=dataclasses.replace(config.otlp, spool=dataclasses.replace(config.otlp.spool)),
        plugins=dataclasses.replace(config.plugins),
        scan=dataclasses.replace(config.scan),
        canary=dataclasses.replace(config.canary),
        redaction=dataclasses.replace(config.redaction),
    )
    given = {k: v for k, v in vars(args).items() if v is not None and not (k in _LIST_FLAGS and not v)}
    for name in (f.name for f in dataclasses.fields(AgentConfig)):
        if name in given and name not in ("otlp", "plugins", "scan", "canary", "redaction", "source"):
            value = given[name]
            setattr(merged, name, list(value) if isinstance(value, (list, tuple)) else value)
    if "output" in given:  # argparse's `--output` (append) lands in `output`
        merged.outputs = list(given["output"])
    for flag, dotted in _CLI_MAP.items():
        if flag in given:
            section, attr = dotted.split(".")
            setattr(getattr(merged, section), attr, given[flag])
    if "otlp_header" in given:
        merged.otlp.headers = {**merged.otlp.headers, **_parse_headers(given["otlp_header"])}
    if given.get("no_metrics"):
        merged.otlp.metrics = False
    if given.get("no_scan"):
        merged.scan.enabled = False
    if given.get("no_canary"):
        merged.canary.enabled = False
    return merged


def _parse_headers(items: list[str]) -> dict[str, str]:
    headers = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--otlp-header {item!r}: expected KEY=VALUE")
        headers[key.strip()] = value.strip()
    return headers
