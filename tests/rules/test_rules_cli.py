"""`otel-fim rules check` / `rules test`, and recorded jsonl records back into events."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from otel_fim.commands import main
from otel_fim.export.record import RecordError, event_from_record, log_record, unescape_name
from otel_fim.rules.ruleset import RuleSet
from tests.factories import O_CREAT, O_WRONLY, make_event

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DIR = ROOT / "rules"


def test_check_default_rules(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rules", "check", str(DEFAULT_DIR)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"OK: {len(RuleSet.load([DEFAULT_DIR]))} rules (0 disabled) from 1 file")
    assert "approvers open flags: any of O_WRONLY|O_RDWR|O_CREAT|O_TRUNC|O_APPEND|__O_TMPFILE" in out
    assert "approvers parent dirs: /bin, /etc/apt/apt.conf.d, /etc/cron.d" in out
    assert "approvers destination paths: /etc/anacrontab" in out
    # Every event type the default policy uses gets in-kernel approvers: none accepts all paths,
    # the setuid and file-capability rules are approved by value.
    assert "accept all" not in out
    assert "or any path when mode has any of 0o6000" in out
    assert "or any path when the xattr is security.capability" in out
    assert "no rules (not attached): mkdir, rmdir" in out


def test_check_reports_errors_and_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text('rules:\n  - id: r\n    expression: open.file.pth == "/x"\n')
    assert main(["rules", "check", str(bad)]) == 1
    err = capsys.readouterr().err
    assert f"{bad}:3:17: unknown field 'open.file.pth'" in err
    assert err.rstrip().endswith("1 error")


def _write_events(path: Path, events: list[object]) -> None:
    path.write_text("".join(json.dumps(log_record(e)) + "\n" for e in events))


def test_test_command_on_recorded_events(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    events = tmp_path / "events.jsonl"
    _write_events(
        events,
        [
            make_event("open", "/etc/shadow", flags=O_WRONLY, comm="vipw"),
            make_event("open", "/etc/shadow", flags=0, comm="sshd"),
            make_event("rename", "/tmp/x", dest="/etc/cron.d/job", comm="mv"),
        ],
    )
    with events.open("a") as f:
        f.write("not json\n")
    assert main(["rules", "test", "--events", str(events), str(DEFAULT_DIR)]) == 1  # a line was skipped
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert lines[0].startswith("1: MATCH credentials_modified (high): open /etc/shadow [O_WRONLY] by vipw")
    assert lines[1].startswith("2: -     open /etc/shadow [O_RDONLY]")
    assert lines[2].startswith("3: MATCH cron_modified (high): rename /tmp/x -> /etc/cron.d/job")
    assert lines[-1] == "3 events, 2 matched, 1 not matched, 1 skipped"
    assert f"{events}:4: skipped" in captured.err


def test_test_command_only_matches(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    events = tmp_path / "events.jsonl"
    _write_events(events, [make_event("open", "/etc/passwd", flags=0), make_event("unlink", "/etc/passwd")])
    assert main(["rules", "test", "--only-matches", "--events", str(events), str(DEFAULT_DIR)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 3 and out[0].startswith("2: MATCH credentials_modified")


@pytest.mark.parametrize(
    "event",
    [
        make_event("open", "/etc/shadow", flags=O_WRONLY | O_CREAT, mode=0o600, comm="vi", uid=1000, euid=0),
        make_event("chmod", "/usr/bin/x", mode=0o4755, container="abc"),
        make_event("chown", "/etc/x", uid=0, gid=-1),
        make_event("rename", "/tmp/a", dest="/etc/b"),
        make_event("symlink", "/etc/l", dest="../target"),
        make_event("setxattr", "/bin/ls", xattr="security.capability"),
        make_event("truncate", "/var/log/x"),
        make_event("unlink", "/tmp/caf\udce9\n\\x", comm="r\tm"),  # non-UTF-8 byte, control chars
    ],
)
def test_record_round_trip_preserves_what_rules_see(event: object) -> None:
    back = event_from_record(json.loads(json.dumps(log_record(event))))
    assert back.type is event.type
    assert back.file.path == event.file.path and back.file.inode == event.file.inode
    assert back.file.mode == event.file.mode & 0o7777  # the record drops the file-type bits
    assert back.process == event.process
    assert back.details == event.details or (back.details.destination.path == event.details.destination.path)
    assert back.container == event.container
    assert back.retval == event.retval


def test_record_errors() -> None:
    with pytest.raises(RecordError, match="otel_fim.event.type"):
        event_from_record({"attributes": {"file.path": "/x"}})
    with pytest.raises(RecordError, match="unknown event type"):
        event_from_record({"attributes": {"otel_fim.event.type": "exec", "file.path": "/x"}})
    with pytest.raises(RecordError, match="expected a number"):
        attrs = {"otel_fim.event.type": "open", "file.path": "/x", "process.pid": "x"}
        event_from_record({"attributes": attrs})
    assert unescape_name("a\\x41\\xff\\\\n") == "aA\udcff\\n"


def test_recorded_events_evaluate_like_the_originals() -> None:
    rs = RuleSet.load([DEFAULT_DIR])
    event = make_event("link", "/tmp/x", dest="/etc/sudoers.d/x", comm="ln")
    back = event_from_record(log_record(event))
    assert (
        [m.rule_id for m in rs.evaluate(back)]
        == [m.rule_id for m in rs.evaluate(event)]
        == ["sudoers_modified"]
    )
