"""`otel-fim run`: the agent. Loads rules, attaches the sensor, feeds the pipeline until stopped."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from otel_fim.config import AgentConfig, ConfigError, add_config_arguments, load_config, merge_cli
from otel_fim.event import Event
from otel_fim.export import redact
from otel_fim.export.outputs import OutputSpecError
from otel_fim.export.telemetry import build_export
from otel_fim.kernel.aliases import AliasResolver
from otel_fim.kernel.kernel_filter import KernelFilter
from otel_fim.kernel.layout import COUNTERS
from otel_fim.kernel.sensor import (
    DEFAULT_BACKLOG_MIB,
    DEFAULT_RINGBUF_PAGES,
    Sensor,
    SensorError,
    SensorOptions,
)
from otel_fim.pipeline import Evaluator, Pipeline
from otel_fim.plugin_manager import Plugins, load_plugins
from otel_fim.process.context import ProcessContext  # also registers the process.* rule fields
from otel_fim.rules.errors import RuleError
from otel_fim.sdnotify import Notifier

log = logging.getLogger("otel_fim")

# How often watched files and directories are stat()ed again for the inode approvers.
INODE_REFRESH_S = 5.0


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
    p.add_argument("-v", "--verbose", action="store_true")
    add_config_arguments(p)
    p.set_defaults(func=run)


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


def load_rules(paths: Sequence[str], known_actions: dict[str, Any] | None = None) -> Evaluator | None:
    if not paths:
        return None
    from otel_fim.rules.ruleset import RuleSet

    return RuleSet.load(paths, known_actions)


class StopFlag:
    """SIGINT/SIGTERM end the loop (everything is then detached in order); SIGHUP asks for a rule
    reload, done by the polling loop between two polls."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.reload = threading.Event()
        self.signal: int | None = None

    def install(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._on_signal)
        signal.signal(signal.SIGHUP, lambda _signum, _frame: self.reload.set())

    def _on_signal(self, signum: int, _frame: object) -> None:
        self.signal = signum
        self.event.set()


def reload_rules(config: AgentConfig, plugins: Plugins, pipeline: Pipeline, sensor: Sensor) -> bool:
    """Load the policy files again; on any error keep the rules in force (a typo in a policy must
    not blind the agent). The kernel filter is rebuilt, which makes every discarder stale."""
    if not config.rules:
        log.info("rule reload: no rules configured, every event is still reported")
        return False
    try:
        ruleset = load_rules(config.rules, plugins.known_actions())
    except (RuleError, OSError, ValueError) as exc:
        log.error("rule reload failed, the previous rules stay in force:\n%s", exc)
        return False
    pipeline.ruleset = ruleset
    if sensor.filter is not None:
        sensor.filter.apply(ruleset)
    plugins.rules_loaded(ruleset)
    log.info("rules reloaded: %d rules from %s", len(ruleset), ", ".join(config.rules))
    return True


def stats_snapshot(sensor: Sensor, pipeline: Pipeline) -> dict[str, Any]:
    kernel: dict[str, dict[str, int]] = {}
    for (counter, etype), value in sensor.counters().items():
        kernel.setdefault(etype.value, {})[counter] = value
    c = pipeline.counters
    return {
        "kernel": kernel,
        "user": {
            "evaluated": {t.value: n for t, n in c.evaluated.items()},
            "matched": {t.value: n for t, n in c.matched.items()},
            "emitted": {t.value: n for t, n in c.emitted.items()},
            "prefiltered": {t.value: n for t, n in c.prefiltered.items()},
            "rule_matches": dict(c.rule_matches),
            "output_errors": c.output_errors,
            "plugin_errors": c.plugin_errors,
            "plugin_queue_overflow": c.plugin_queue_overflow,
            "decode_errors": sensor.decode_errors,
            "handler_errors": sensor.handler_errors,
            "backlog_peak": sensor.backlog_peak,
            "unhandled_at_exit": sensor.backlog,
        },
        "filter": filter_snapshot(sensor),
    }


def alias_source(kernel_filter: KernelFilter) -> Callable[[Event], list[str]]:
    resolver = AliasResolver()

    def aliases(event: Event) -> list[str]:
        resolver.watched_files = kernel_filter.watched_files
        return resolver.aliases(event)

    return aliases


def filter_snapshot(sensor: Sensor) -> dict[str, int]:
    f = sensor.filter
    if f is None:
        return {}
    return {
        "enabled": int(f.enabled),
        "discarders_pushed": f.stats.discarders_pushed,
        "discarders_suppressed": f.stats.discarders_suppressed,
        "discarders_valid": f.discarder_count(),
        "discarder_revision": f.revision(),
        "approver_inodes": f.stats.approver_inodes,
        **{f"name_lookup_{name}": n for name, n in sensor.lookup_counters().items()},
    }


def status_line(stats: dict[str, Any]) -> str:
    totals: dict[str, int] = {}
    for counters in stats["kernel"].values():
        for name, value in counters.items():
            totals[name] = totals.get(name, 0) + value
    user = stats["user"]
    kernel = " ".join(f"{name}={totals.get(name, 0)}" for name in COUNTERS)
    evaluated, matched = sum(user["evaluated"].values()), sum(user["matched"].values())
    return f"otel-fim: kernel {kernel} | user evaluated={evaluated} matched={matched}"


def run(args: argparse.Namespace) -> int:
    try:
        config = merge_cli(load_config(args.config) if args.config else AgentConfig(), args)
    except (ConfigError, OSError) as exc:
        print(f"otel-fim: {exc}", file=sys.stderr)
        return 2
    level = logging.DEBUG if args.verbose else getattr(logging, config.log_level.upper())
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    if (refusal := config.refuse_export(bool(config.rules))) is not None:  # before anything starts
        print(f"otel-fim: {refusal}", file=sys.stderr)
        return 2
    try:
        plugins = load_plugins(config)  # before the rules: plugins add rule fields and actions
        ruleset = load_rules(config.rules, plugins.known_actions())
        redact.configure(redact.Redactor(**dataclasses.asdict(config.redaction)))
        export = build_export(config)
    except (OutputSpecError, OSError, ValueError, RuleError) as exc:  # bad input: say what and where
        print(f"otel-fim: {exc}", file=sys.stderr)
        return 2
    process_context = ProcessContext()
    pipeline = Pipeline(export.outputs, ruleset)
    pipeline.enrich = process_context.enrich
    plugins.start(pipeline, ruleset, export.metrics)  # pipeline.close() drains and stops it
    stop = StopFlag()
    stop.install()
    sensor = Sensor(
        pipeline.handle,
        SensorOptions(
            ringbuf_pages=config.ringbuf_pages,
            kernel_filter=config.kernel_filter,
            backlog_mib=config.backlog_mib,
        ),
        modules=[process_context.module],
    )
    # One drain of the process ring buffer per poll, after the file records were read and before
    # they are handled: every exec record written before them is then in the cache.
    sensor.before_delivery.append(process_context.module.drain)
    process_context.drain_each_event = False
    ready_file = Path(config.ready_file) if config.ready_file else None
    notifier = Notifier()  # systemd Type=notify; a no-op elsewhere
    stats: dict[str, Any] | None = None
    try:
        sensor.start()
    except SensorError as exc:
        print(f"otel-fim: {exc}", file=sys.stderr)
        export.shutdown_metrics()
        pipeline.close()
        return 1
    try:
        with sensor:
            assert sensor.filter is not None
            sensor.filter.apply(ruleset)
            pipeline.on_unmatched.append(sensor.filter.learn)
            pipeline.aliases = alias_source(sensor.filter)
            for line in sensor.filter.describe():
                log.debug("kernel filter: %s", line)
            export.attach(sensor, pipeline)
            if ready_file:
                ready_file.write_text(f"{sensor.attached_count()}\n")
            notifier.ready(f"attached {sensor.attached_count()} tracepoints")
            log.info(
                "attached %d tracepoints; reporting %s",
                sensor.attached_count(),
                "rule matches" if ruleset else "every file event",
            )
            poll_until_stopped(
                sensor,
                pipeline,
                stop,
                config.duration,
                config.status_interval,
                reload=lambda: reload_rules(config, plugins, pipeline, sensor),
                notifier=notifier,
            )
            notifier.stopping()
            drain(sensor)  # what is already in the ring buffer still counts
            pipeline.flush()  # the plugin stage hands what it holds to the outputs
            pipeline.end_batch()
            stats = stats_snapshot(sensor, pipeline)
            export.shutdown_metrics()  # the last export still reads the BPF maps
    finally:
        export.shutdown_metrics()
        pipeline.close()
        if ready_file:
            ready_file.unlink(missing_ok=True)
    if stats is not None:
        print(status_line(stats), file=sys.stderr)
        if config.stats_file:
            Path(config.stats_file).write_text(json.dumps(stats, indent=2, sort_keys=True) + "\n")
    return 0


def drain(sensor: Sensor, seconds: float = 10.0) -> None:
    """Handle what was read or written before the stop, for at most `seconds` (a supervisor's stop
    timeout is longer); what is left is counted as unhandled_at_exit."""
    deadline = time.monotonic() + seconds
    while sensor.poll(0) and time.monotonic() < deadline:
        pass


def poll_until_stopped(
    sensor: Sensor,
    pipeline: Pipeline,
    stop: StopFlag,
    duration: float | None,
    status_interval: float,
    reload: Callable[[], bool] = lambda: False,
    notifier: Notifier | None = None,
) -> None:
    deadline = None if duration is None else time.monotonic() + duration
    ping_every = notifier.watchdog_interval if notifier is not None else None
    next_ping = time.monotonic()
    next_status = time.monotonic() + status_interval if status_interval > 0 else None
    next_refresh = time.monotonic() + INODE_REFRESH_S
    while not stop.event.is_set():
        sensor.poll(100)
        pipeline.end_batch()
        if stop.reload.is_set():
            stop.reload.clear()
            reload()
        now = time.monotonic()
        if ping_every is not None and now >= next_ping:  # WatchdogSec=: the loop is alive
            notifier.watchdog()  # type: ignore[union-attr]
            next_ping = now + ping_every
        if sensor.filter is not None and now >= next_refresh:
            sensor.filter.refresh_inodes()  # watched files replaced by rename get new inodes
            next_refresh = now + INODE_REFRESH_S
        if deadline is not None and now >= deadline:
            break
        if next_status is not None and now >= next_status:
            print(status_line(stats_snapshot(sensor, pipeline)), file=sys.stderr, flush=True)
            next_status = now + status_interval
