"""kill: a rule action that signals the process that caused the event.

Off unless a rule asks for it:

    actions: [kill]                         # SIGKILL
    actions: [{kill: {signal: SIGTERM}}]    # a name (SIGTERM, TERM) or a number

It runs after the detection was exported (and after alerts), on the plugin worker, so the record
always exists even when the process is gone by then. The target is the event's process (its
thread group id). It never signals pid 1, the agent itself, nor a pid whose start time no longer
matches the event's process (reused pid), and logs what it did.
"""

from __future__ import annotations

import logging
import os
import signal as signals

from otel_fim.plugin_api import ActionSchema, Param, hookimpl

log = logging.getLogger(__name__)


def signal_number(value: str | int) -> int | None:
    if isinstance(value, int):
        return value if value in signals.valid_signals() else None
    name = value.upper()
    name = name if name.startswith("SIG") else f"SIG{name}"
    sig = getattr(signals, name, None)
    return int(sig) if isinstance(sig, signals.Signals) else None


def _check_signal(value: str | int) -> str | None:
    return None if signal_number(value) is not None else f"{value!r} is not a signal"


@hookimpl
def otel_fim_rule_actions():
    return {
        "kill": ActionSchema(
            {
                "signal": Param(
                    (str, int), default="SIGKILL", check=_check_signal, doc="signal name or number"
                )
            },
            doc="signal the process that caused the event",
        )
    }


def _start_ticks(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # the comm field may hold spaces and parentheses: fields restart after the last ')'
    return int(stat[stat.rindex(b")") + 2 :].split()[19])


def _boot_time_ns() -> int:
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("btime "):
                return int(line.split()[1]) * 1_000_000_000
    return 0


def _same_process(pid: int, start_time_ns: int | None) -> bool:
    """True unless we can tell the pid now belongs to another process."""
    if start_time_ns is None:
        return True
    ticks = _start_ticks(pid)
    if ticks is None:
        return False
    started = _boot_time_ns() + ticks * 1_000_000_000 // os.sysconf("SC_CLK_TCK")
    return abs(started - start_time_ns) < 2_000_000_000  # btime has 1 s resolution


@hookimpl
def otel_fim_run_action(action, params, event, match):
    sig = signal_number(params["signal"])
    pid = event.process.pid
    if pid <= 1 or pid == os.getpid():
        log.warning("kill: rule %s: not signalling pid %d", match.rule_id, pid)
        return
    if not _same_process(pid, event.process.start_time_ns):
        log.warning("kill: rule %s: pid %d is another process now; not signalled", match.rule_id, pid)
        return
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        log.info("kill: rule %s: pid %d (%s) already exited", match.rule_id, pid, event.process.comm)
        return
    log.warning(
        "kill: rule %s: sent %s to pid %d (%s) for %s %s",
        match.rule_id, signals.Signals(sig).name, pid, event.process.comm, event.type.value,
        event.file.path,
    )  # fmt: skip
