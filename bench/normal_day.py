"""False positives of the default policy: a "normal day" on this machine under the real agent.

Routine administration and use -- a package installed and removed, logs rotated, systemd reloaded,
a user editing their own files and saving shell history, a Python venv created and used, a compile
in /tmp, the daily cron jobs -- with `rules/default.yaml`, counting the detections per rule and
activity, and the kernel filter's drop ratio over the same run. Target: no high/critical detection.

    .venv/bin/python -m bench.normal_day [--package sl --package tree] [--json OUT]

Run as root on a Debian machine (it uses apt-get, logrotate, runuser). It creates a scratch user
(`ofimday`, with a home) before the agent starts and removes it after the agent stopped, so the
account changes are not part of the day.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench.agent_runner import DEFAULT_RULES, Agent, AgentConfig, AgentResult

USER = "ofimday"
# Other workers may hold dpkg's lock on a shared machine: wait for it instead of failing.
APT = ["apt-get", "-o", "DPkg::Lock::Timeout=600"]
HOME = Path(f"/home/{USER}")


@dataclass
class Activity:
    name: str
    commands: list[list[str]]
    start_ns: int = 0
    end_ns: int = 0
    exit_codes: list[int] = field(default_factory=list)


def as_user(script: str) -> list[str]:
    return ["runuser", "-u", USER, "--", "/bin/bash", "-c", f"cd {HOME} && {script}"]


def activities(packages: list[str]) -> list[Activity]:
    hello = 'printf "#include <stdio.h>\\nint main(void){puts(\\"hi\\");return 0;}\\n" > hello.c'
    return [
        Activity("apt-get install + remove", [
            [*APT, "install", "-y", "-q", "--no-install-recommends", *packages],
            [*APT, "remove", "-y", "-q", *packages],
        ]),
        Activity("logrotate -f", [["logrotate", "-f", "/etc/logrotate.conf"]]),
        Activity("systemctl daemon-reload", [["systemctl", "daemon-reload"]]),
        Activity("user edits own files", [as_user(
            "mkdir -p docs && echo 'meeting notes' > docs/notes.txt"
            " && sed -i 's/notes/minutes/' docs/notes.txt"
            " && cp docs/notes.txt docs/notes.bak && rm docs/notes.bak"
            " && vim -E -s -c 'normal Go- item' -c wq docs/notes.txt"
            " && echo \"alias ll='ls -l'\" >> .bashrc"
        )]),
        Activity("user shell saves history", [as_user(
            # twice: a new history file is written in place (0600), an existing one through a
            # temp file renamed over it -- readline's two ways
            "for i in 1 2; do HISTFILE=~/.bash_history bash -c 'set -o history; echo $i; history -w'; done"
        )]),
        Activity("python venv created and used", [as_user(
            "python3 -m venv proj/venv && proj/venv/bin/python -c 'import json, sqlite3; print(1)'"
            " && proj/venv/bin/pip --version"
        )]),
        Activity("compile in /tmp", [as_user(
            f"d=$(mktemp -d /tmp/build.XXXX) && cd $d && {hello} && gcc -O2 -o hello hello.c && ./hello"
            " && cd / && rm -rf $d"
        )]),
        # What cron runs every day (apt-compat is left out: without systemd it sleeps up to 30 min).
        Activity("daily cron jobs (dpkg, man-db)", [
            ["run-parts", "--report", "--regex", "^(dpkg|man-db)$", "/etc/cron.daily"],
        ]),
    ]  # fmt: skip


def run_activity(activity: Activity) -> None:
    activity.start_ns = time.time_ns()
    for cmd in activity.commands:
        done = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=False)
        activity.exit_codes.append(done.returncode)
        if done.returncode:
            print(f"  ({activity.name}: {cmd[0]} exited {done.returncode}: {done.stderr.strip()[-200:]})")
    activity.end_ns = time.time_ns()


def setup_user() -> None:
    subprocess.run(["userdel", "-r", USER], capture_output=True, check=False)
    subprocess.run(["useradd", "-m", "-s", "/bin/bash", USER], check=True, capture_output=True)


def teardown_user() -> None:
    subprocess.run(["userdel", "-r", USER], capture_output=True, check=False)


OTHERS = "(other processes on the machine)"
# A probe policy beside the default one: what the exemptions silenced (not a detection).
EXEMPTED = "normal_day_exempted_write"
EXEMPTED_POLICY = f"""
rules:
  - id: {EXEMPTED}
    description: a write to a watched system path that the package-manager exemption silences
    expression: >
      fim.write.file.path in ["/usr/bin/*", "/bin/*", "/usr/sbin/*", "/etc/**", "/usr/lib/systemd/**",
                              "/lib/systemd/**", "/var/log/**", "/usr/lib/python3/**"]
      && (by_package_manager || by_log_writer)
    severity: info
"""


@dataclass
class Detection:
    rule: str
    severity: str
    technique: str
    activity: str
    path: str
    executable: str


def detections(records: Path, acts: Sequence[Activity]) -> list[Detection]:
    out = []
    if not records.exists():
        return out
    for line in records.read_text().splitlines():
        record = json.loads(line)
        a = record["attributes"]
        when = record["timestamp"]
        if os.getpid() not in a.get("otel_fim.process.ancestors.pid", []):
            activity = OTHERS  # the machine is shared: not one of our activities
        else:
            activity = next((x.name for x in acts if x.start_ns <= when <= x.end_ns), "(between activities)")
        exe = a.get("process.executable.path", a.get("process.executable.name", ""))
        rules, techniques = a.get("otel_fim.rule.ids", []), a.get("otel_fim.rule.techniques", [])
        for rule, technique in zip(rules, techniques, strict=False):
            if rule == EXEMPTED and activity == OTHERS:
                continue
            out.append(Detection(rule, "", technique, activity, a.get("file.path", ""), exe))
    return out


def severities() -> dict[str, str]:
    from otel_fim.rules.ruleset import RuleSet

    return {r.id: r.severity for r in RuleSet.load([DEFAULT_RULES])}


def report(acts: Sequence[Activity], found: list[Detection], result: AgentResult) -> str:
    sev = severities()
    lines = ["| activity | exit codes | detections |", "|---|---|---|"]
    exempted = Counter(d.activity for d in found if d.rule == EXEMPTED)
    found = [d for d in found if d.rule != EXEMPTED]
    per_activity = Counter(d.activity for d in found)
    lines[0] = "| activity | exit codes | detections | watched-path writes silenced by an exemption |"
    lines[1] = "|---|---|---|---|"
    for act in acts:
        codes = ", ".join(map(str, act.exit_codes))
        lines.append(f"| {act.name} | {codes} | {per_activity[act.name]} | {exempted[act.name]} |")
    for extra in ("(between activities)", OTHERS):
        if per_activity[extra]:
            lines.append(f"| {extra} | | {per_activity[extra]} |")
    lines += ["", "| rule | severity | technique | activity | detections | example file (executable) |",
              "|---|---|---|---|---|---|"]  # fmt: skip
    groups: dict[tuple[str, str], list[Detection]] = {}
    for d in found:
        groups.setdefault((d.rule, d.activity), []).append(d)
    for (rule, activity), ds in sorted(groups.items()):
        example = f"`{ds[0].path}` ({ds[0].executable})"
        row = f"| {rule} | {sev.get(rule, '?')} | {ds[0].technique} | {activity} | {len(ds)} | {example} |"
        lines.append(row)
    high = sum(1 for d in found if sev.get(d.rule) in ("high", "critical") and d.activity != OTHERS)
    seen = result.kernel_total("seen")
    lines += [
        "",
        f"high/critical detections of the day: {high} (target 0); all detections: {len(found)} "
        f"({sum(1 for d in found if d.activity == OTHERS)} from other processes on the machine)",
        f"kernel: {seen:,} file syscalls seen, {result.dropped_fraction:.2%} dropped in the kernel, "
        f"{result.kernel_total('sent'):,} sent to user space, {result.kernel_total('lost')} lost",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--package", action="append", help="small Debian packages to install and remove (default: sl, tree)"
    )
    parser.add_argument("--json", type=Path, help="also write the detections as JSON here")
    args = parser.parse_args(argv)
    for tool in ("apt-get", "logrotate", "runuser", "gcc", "useradd"):
        if shutil.which(tool) is None:
            print(f"normal_day: {tool} is not installed", file=sys.stderr)
            return 2
    acts = activities(args.package or ["sl", "tree"])
    setup_user()
    workdir = Path(tempfile.mkdtemp(prefix="otel-fim-normal-day-"))
    try:
        probe = workdir / "exempted.yaml"
        probe.write_text(EXEMPTED_POLICY)
        with Agent(AgentConfig("default policy", (DEFAULT_RULES, probe)), workdir) as agent:
            for act in acts:
                print(f"- {act.name}")
                run_activity(act)
            agent.wait_idle()
            result = agent.stop()
        found = detections(agent.records, acts)
    finally:
        teardown_user()
    text = report(acts, found, result)
    print(text)
    if args.json:
        args.json.write_text(json.dumps([d.__dict__ for d in found], indent=1))
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
