"""Rule engine throughput: `RuleSet.evaluate` on the default ruleset, one core, realistic event mix.

    .venv/bin/python -m bench.bench_rules [--events 200000] [--rounds 5] [--rules rules/]

The mix is what a busy host's sensor would hand user space if nothing were filtered in the kernel:
mostly read-only opens of libraries and configuration, writes to logs, temporary and home files,
some unlinks, renames, chmods and utimes, and about 1% of events touching watched files (half by a
package manager, which the rules exclude). Events are built once; only `evaluate` is timed. The
best round is reported (the least disturbed by the rest of the machine).
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

from otel_fim.event import Event, EventType
from otel_fim.rules.ruleset import RuleSet
from tests.factories import O_APPEND, O_CLOEXEC, O_CREAT, O_RDONLY, O_RDWR, O_TRUNC, O_WRONLY, make_event

DEFAULT_RULES = Path(__file__).resolve().parents[1] / "rules"

LIBS = [
    f"/usr/lib/x86_64-linux-gnu/lib{n}.so.{v}"
    for n in ("c", "m", "ssl", "crypto", "z", "pthread")
    for v in (1, 6)
]
CONFIGS = [
    "/etc/ld.so.cache", "/etc/nsswitch.conf", "/etc/passwd", "/etc/group", "/etc/hosts", "/etc/resolv.conf",
    "/etc/localtime", "/usr/share/zoneinfo/UTC", "/etc/ssl/openssl.cnf", "/usr/bin/python3",
]  # fmt: skip
HOMES = [
    f"/home/user{i}/{d}/file{j}.txt"
    for i in range(4)
    for d in ("src", "docs", ".cache/app")
    for j in range(20)
]
LOGS = [
    "/var/log/syslog",
    "/var/log/auth.log",
    "/var/log/nginx/access.log",
    "/var/lib/postgresql/15/main/base/1/2",
]
TMPS = [f"/tmp/tmp.{i:06x}" for i in range(500)]
WATCHED = [
    "/etc/shadow", "/etc/cron.d/backup", "/usr/bin/ls", "/etc/ssh/sshd_config", "/root/.ssh/authorized_keys",
    "/etc/systemd/system/app.service", "/boot/grub/grub.cfg", "/etc/pam.d/sshd", "/home/user1/.bashrc",
]  # fmt: skip
COMMS = ["bash", "python3", "nginx", "postgres", "sshd", "systemd", "cron", "vim", "git", "node"]


def _event(
    t: EventType,
    path: str,
    rng: random.Random,
    *,
    flags: int = O_RDONLY,
    mode: int = 0,
    comm: str | None = None,
) -> Event:
    """One event of the mix by a random process; random draws in a fixed order (pid, comm, inode),
    so a seed always gives the same mix."""
    pid = rng.randrange(100, 30000)
    comm = comm or rng.choice(COMMS)
    inode = rng.randrange(1, 1 << 20)
    return make_event(
        t, path, flags=flags, mode=mode, pid=pid, uid=1000, gid=1000, comm=comm, inode=inode, timestamp_ns=0
    )


def event_mix(count: int, seed: int = 1) -> list[Event]:
    rng = random.Random(seed)
    out: list[Event] = []
    for _ in range(count):
        r = rng.random()
        if r < 0.45:  # read-only opens: libraries and configuration
            path = rng.choice(LIBS + CONFIGS)
            out.append(_event(EventType.OPEN, path, rng, flags=O_RDONLY | O_CLOEXEC))
        elif r < 0.55:  # reading user files
            out.append(_event(EventType.OPEN, rng.choice(HOMES), rng, flags=O_RDONLY))
        elif r < 0.70:  # writes: logs, temporary and home files
            path = rng.choice(LOGS + TMPS + HOMES)
            flags = rng.choice([O_WRONLY | O_APPEND, O_WRONLY | O_CREAT | O_TRUNC, O_RDWR])
            out.append(_event(EventType.OPEN, path, rng, flags=flags, mode=0o644))
        elif r < 0.82:
            out.append(_event(EventType.UNLINK, rng.choice(TMPS), rng))
        elif r < 0.90:
            out.append(_event(EventType.RENAME, rng.choice(HOMES + TMPS), rng))  # onto <name>.new
        elif r < 0.95:
            out.append(_event(EventType.CHMOD, rng.choice(TMPS + HOMES), rng, mode=0o600))
        elif r < 0.99:
            out.append(_event(EventType.UTIMES, rng.choice(HOMES + LOGS), rng))
        else:  # ~1%: a watched file written, half of the time by the package manager
            comm = "dpkg" if rng.random() < 0.5 else "bash"
            path = rng.choice(WATCHED)
            out.append(_event(EventType.OPEN, path, rng, flags=O_WRONLY | O_TRUNC, mode=0o644, comm=comm))
    return out


def run(ruleset: RuleSet, events: list[Event], rounds: int) -> tuple[float, int]:
    """Best events/s over `rounds`, and how many events matched some rule."""
    evaluate = ruleset.evaluate
    matched = sum(1 for e in events if evaluate(e))
    best = 0.0
    for _ in range(rounds):
        start = time.perf_counter()
        for e in events:
            evaluate(e)
        elapsed = time.perf_counter() - start
        best = max(best, len(events) / elapsed)
    return best, matched


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--rules", default=str(DEFAULT_RULES))
    args = parser.parse_args(argv)
    ruleset = RuleSet.load([args.rules])
    events = event_mix(args.events)
    rate, matched = run(ruleset, events, args.rounds)
    print(
        f"{len(ruleset)} rules, {len(events)} events ({matched / len(events):.2%} matched): "
        f"{rate:,.0f} events/s (best of {args.rounds} rounds, one core)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
