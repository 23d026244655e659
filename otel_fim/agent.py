"""The agent's lifecycle: build the data path, attach, poll until stopped, reload on SIGHUP, drain,
report. What is wired to what is decided in `otel_fim.wiring`; the flags in `otel_fim.commands.run`."""

from __future__ import annotations

import dataclasses
import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from otel_fim.config import AgentConfig
from otel_fim.export import redact
from otel_fim.export.outputs import OutputSpecError
from otel_fim.kernel.layout import COUNTERS
from otel_fim.kernel.sensor import Sensor, SensorError
from otel_fim.pipeline import Pipeline
from otel_fim.plugin.manager import PluginError
from otel_fim.rules.errors import RuleError
from otel_fim.rules.watch import PolicyWatch
from otel_fim.sdnotify import Notifier
from otel_fim.wiring import DataPath, build_data_path

log = logging.getLogger("otel_fim")

# How often watched files and directories are stat()ed again for the inode approvers.
INODE_REFRESH_S = 5.0
# How often the policy files are checked for a change (a ConfigMap update, an edit): then reloaded.
RULES_CHECK_S = 2.0


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


def reload_rules(path: DataPath) -> bool:
    """Load the policy files again; on any error keep the rules in force (a typo in a policy must
    not blind the agent)."""
    if not path.config.rules:
        log.info("rule reload: no rules configured, every event is still reported")
        return False
    try:
        ruleset = path.reload_rules()
    except (RuleError, OSError, ValueError) as exc:
        log.error("rule reload failed, the previous rules stay in force:\n%s", exc)
        return False
    except Exception:  # a loader bug must not blind the agent either
        log.exception("rule reload failed unexpectedly, the previous rules stay in force")
        return False
    # the built-in policies (the canary's: one rule each) are not the user's
    n = len(ruleset) - len(path.builtin_rules)
    log.info("rules reloaded: %d rules from %s", n, ", ".join(path.config.rules))
    return True


def spool_snapshot(outputs: Any) -> dict[str, int]:
    """Depth and drops of the OTLP spool (the outputs that have one); empty without OTLP."""
    spools = [o.spool for o in outputs if hasattr(o, "spool")]
    if not spools:
        return {}
    return {"depth": sum(s.depth() for s in spools), "dropped": sum(s.dropped_total for s in spools)}


def stats_snapshot(sensor: Sensor, pipeline: Pipeline, outputs: Any = ()) -> dict[str, Any]:
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
        "spool": spool_snapshot(outputs),
        "export": export_snapshot(pipeline),
    }


def export_snapshot(pipeline: Pipeline) -> dict[str, int]:
    """Delivery counters of the outputs that have them (the OTLP spool)."""
    outputs = pipeline.emitter.outputs
    return {k: v for out in outputs for k, v in getattr(out, "delivery_stats", dict)().items()}


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
        "linked_inodes": f.stats.linked_inodes,
        "linked_scan_entries": f.stats.linked_scan_entries,
        "linked_scan_truncated": f.stats.linked_scan_truncated,
        **{f"name_lookup_{name}": n for name, n in sensor.lookup_counters().items()},
        **{f"verdict_{name}": n for name, n in sensor.verdict_counters().items()},
        "verdict_revision": f.verdict_revision(),
        **{f"coalesce_{name}": n for name, n in sensor.coalesce_counters().items()},
    }


def status_line(stats: dict[str, Any]) -> str:
    totals: dict[str, int] = {}
    for counters in stats["kernel"].values():
        for name, value in counters.items():
            totals[name] = totals.get(name, 0) + value
    user = stats["user"]
    kernel = " ".join(f"{name}={totals.get(name, 0)}" for name in COUNTERS)
    evaluated, matched = sum(user["evaluated"].values()), sum(user["matched"].values())
    line = (
        f"otel-fim: kernel {kernel} | user evaluated={evaluated} matched={matched}"
        f" backlog={user.get('unhandled_at_exit', 0)} plugin_overflow={user.get('plugin_queue_overflow', 0)}"
        f" plugin_errors={user.get('plugin_errors', 0)} output_errors={user.get('output_errors', 0)}"
    )
    spool = stats.get("spool") or {}
    if spool:
        line += f" | spool depth={spool['depth']} dropped={spool['dropped']}"
    export = stats.get("export")
    if export:
        line += " | otlp " + " ".join(f"{k}={export[k]}" for k in ("spooled", "delivered", "dead_letters"))
    return line


def run_agent(config: AgentConfig) -> int:
    """Exit codes: 0 stopped normally, 1 the sensor could not start, 2 bad input (config, rules,
    outputs, plugins) -- said in one line on stderr."""
    if (refusal := config.refuse_export(bool(config.rules))) is not None:  # before anything starts
        print(f"otel-fim: {refusal}", file=sys.stderr)
        return 2
    try:
        redact.configure(redact.Redactor(**dataclasses.asdict(config.redaction)))
        path = build_data_path(config)
    except (OutputSpecError, PluginError, OSError, ValueError, RuleError) as exc:
        print(f"otel-fim: {exc}", file=sys.stderr)
        return 2
    stop = StopFlag()
    stop.install()
    ready_file = Path(config.ready_file) if config.ready_file else None
    notifier = Notifier()  # systemd Type=notify; a no-op elsewhere
    try:
        path.start()
    except SensorError as exc:
        print(f"otel-fim: {exc}", file=sys.stderr)
        path.close()
        return 1
    stats: dict[str, Any] | None = None
    try:
        with path.sensor as sensor:
            if ready_file:
                ready_file.write_text(f"{sensor.attached_count()}\n")
            notifier.ready(f"attached {sensor.attached_count()} tracepoints")
            log.info(
                "attached %d tracepoints; reporting %s",
                sensor.attached_count(),
                "rule matches" if path.ruleset else "every file event",
            )
            poll_until_stopped(
                sensor,
                path.pipeline,
                stop,
                config.duration,
                config.status_interval,
                reload=lambda: reload_rules(path),
                tick=path.tick,
                status_suffix=path.status_warning,
                notifier=notifier,
                outputs=path.export.outputs,
                policy_watch=PolicyWatch(config.rules) if config.rules else None,
            )
            notifier.stopping()
            drain(sensor)  # what is already in the ring buffer still counts
            path.finish()
            stats = {**stats_snapshot(sensor, path.pipeline, path.export.outputs), **path.extra_stats()}
            path.export.shutdown_metrics()  # the last export still reads the BPF maps
    finally:
        path.close()
        if ready_file:
            ready_file.unlink(missing_ok=True)
    if stats is not None:
        print(status_line(stats) + path.status_warning(), file=sys.stderr)
        if config.stats_file:
            Path(config.stats_file).write_text(json.dumps(stats, indent=2, sort_keys=True) + "\n")
    return 0


def drain(sensor: Sensor, seconds: float = 10.0) -> None:
    """Handle what was read or written before the stop, for at most `seconds` (a supervisor's stop
    timeout is longer); what is left is counted as unhandled_at_exit."""
    deadline = time.monotonic() + seconds
    while sensor.poll(0) and time.monotonic() < deadline:
        pass
    sensor.flush_repeats()  # windows still open: their repeats so far


def poll_until_stopped(
    sensor: Sensor,
    pipeline: Pipeline,
    stop: StopFlag,
    duration: float | None,
    status_interval: float,
    reload: Callable[[], bool] = lambda: False,
    tick: Callable[[], None] | None = None,
    status_suffix: Callable[[], str] | None = None,
    notifier: Notifier | None = None,
    outputs: Any = (),
    policy_watch: PolicyWatch | None = None,
) -> None:
    deadline = None if duration is None else time.monotonic() + duration
    ping_every = notifier.watchdog_interval if notifier is not None else None
    next_ping = time.monotonic()
    next_status = time.monotonic() + status_interval if status_interval > 0 else None
    next_refresh = time.monotonic() + INODE_REFRESH_S
    next_rules_check = time.monotonic() + RULES_CHECK_S
    while not stop.event.is_set():
        sensor.poll(100)
        if tick is not None:
            tick()  # scan findings, coverage gaps (otel_fim.wiring.DataPath.tick)
        pipeline.end_batch()
        if stop.reload.is_set():
            stop.reload.clear()
            reload()
        now = time.monotonic()
        if policy_watch is not None and now >= next_rules_check:
            next_rules_check = now + RULES_CHECK_S
            if policy_watch.changed():  # as SIGHUP: a bad new policy keeps the rules in force
                log.info("policy files changed: reloading the rules")
                reload()
        if ping_every is not None and now >= next_ping:  # WatchdogSec=: the loop is alive
            notifier.watchdog()  # type: ignore[union-attr]
            next_ping = now + ping_every
        if sensor.filter is not None and now >= next_refresh:
            sensor.filter.refresh_inodes()  # watched files replaced by rename get new inodes
            next_refresh = now + INODE_REFRESH_S
        if deadline is not None and now >= deadline:
            break
        if next_status is not None and now >= next_status:
            suffix = status_suffix() if status_suffix is not None else ""
            line = status_line(stats_snapshot(sensor, pipeline, outputs)) + suffix
            print(line, file=sys.stderr, flush=True)
            next_status = now + status_interval
