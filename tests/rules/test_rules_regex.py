"""Rule regexes and globs run in linear time (RE2): hostile file names cannot stall the pipeline, and
what RE2 cannot run is refused at load time with file:line:col."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from otel_fim.commands import main
from otel_fim.export.record import log_record
from otel_fim.pipeline import Emitter, Pipeline
from otel_fim.rules.errors import PolicyError
from otel_fim.rules.ruleset import RuleSet
from tests.factories import O_WRONLY, make_event
from tests.support.rules import matches

HOSTILE_POLICY = r"""version: 1
rules:
  - id: nested_quantifier
    expression: open.file.path =~ r"/tmp/(a+)+"
  - id: alternation
    expression: open.file.path =~ r"/tmp/(a|aa)+b"
  - id: many_globs
    expression: open.file.path =~ "/tmp/*a*a*a*a*a*a*a*a*b"
  - id: list_of_regexes
    expression: open.file.path in [r"/var/(x+x+)+y", r"/var/(.*)*z", "/var/**/**/**/q"]
"""

# Each doubles the work of a backtracking engine per extra character; 10,000 characters.
HOSTILE_NAMES = [
    "/tmp/" + "a" * 10_000 + "!",
    "/tmp/" + "a" * 10_000,
    "/tmp/" + "a" * 10_000 + "c",
    "/var/" + "x" * 10_000,
    "/var/" + "y" * 10_000,
    "/var/" + "a/" * 5_000 + "r",
]
# A budget the old engine (Python's `re`, backtracking) blew by orders of magnitude: with 28 `a`s
# the first name alone took 7.7 s, and every extra `a` doubles it.
BUDGET_S = 2.0


def _collect():
    got: list[tuple[str, list[str]]] = []

    class Collect:
        def emit(self, event, matches, record) -> None:
            got.append((event.file.path, [m.rule_id for m in matches]))

        def close(self) -> None:
            pass

    return Collect(), got


def test_hostile_names_through_the_pipeline_in_linear_time(tmp_path: Path) -> None:
    policy = tmp_path / "hostile.yaml"
    policy.write_text(HOSTILE_POLICY)
    output, got = _collect()
    pipeline = Pipeline(Emitter([output]), RuleSet.load([policy]))
    started = time.perf_counter()
    for name in HOSTILE_NAMES:
        pipeline.handle(make_event("open", name, flags=O_WRONLY))
    elapsed = time.perf_counter() - started
    assert elapsed < BUDGET_S, f"{len(HOSTILE_NAMES)} hostile names took {elapsed:.2f}s"
    # Still correct: only the name that does match is reported, by the rule that matches it.
    assert got == [("/tmp/" + "a" * 10_000, ["nested_quantifier"])]


def test_hostile_names_through_rules_test_in_linear_time(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = tmp_path / "hostile.yaml"
    policy.write_text(HOSTILE_POLICY)
    events = tmp_path / "events.jsonl"
    events.write_text(
        "".join(json.dumps(log_record(make_event("open", n, flags=O_WRONLY))) + "\n" for n in HOSTILE_NAMES)
    )
    started = time.perf_counter()
    assert main(["rules", "test", "--only-matches", "--events", str(events), str(policy)]) == 0
    elapsed = time.perf_counter() - started
    assert elapsed < BUDGET_S + 3.0, f"rules test took {elapsed:.2f}s"  # + loading the policy
    out = capsys.readouterr().out
    assert out.count("MATCH") == 1 and "MATCH nested_quantifier" in out
    n = len(HOSTILE_NAMES)
    assert out.splitlines()[-1] == f"{n} events, 1 matched, {n - 1} not matched, 0 skipped"


@pytest.mark.parametrize(
    ("regex", "message"),
    [
        (r"/tmp/(a)\1", "backreferences like `\\1` are not supported"),
        (r"/tmp/(?P<x>a)(?P=x)", "backreferences `(?P=name)` are not supported"),
        (r"/tmp/(?=a)a", "lookahead `(?=...)` is not supported"),
        (r"/tmp/(?!a)b", "negative lookahead `(?!...)` is not supported"),
        (r"/tmp/(?<=a)b", "lookbehind `(?<=...)` is not supported"),
        (r"/tmp/(?<!a)b", "negative lookbehind `(?<!...)` is not supported"),
        (r"/tmp/a++", "bad regex: bad repetition operator: ++"),
        (r"/tmp/x\Z", "`\\Z` is not supported"),
        (r"/tmp/(a{1000}){1000}", "bad regex: "),
    ],
)
def test_what_re2_cannot_run_is_refused_at_load_time(regex: str, message: str) -> None:
    text = f'rules:\n  - id: r\n    expression: open.file.path =~ r"{regex}"\n'
    with pytest.raises(PolicyError) as info:
        RuleSet.from_text(text, filename="rules/x.yaml")
    err = info.value
    assert (err.file, err.line) == ("rules/x.yaml", 3)
    assert err.message.startswith(message), err.message
    # The column points at the regex literal, or into it at the refused construct.
    regex_col = text.splitlines()[2].index('r"') + 1
    assert regex_col <= err.col <= regex_col + len(regex) + 2
    assert err.render().startswith(f"rules/x.yaml:3:{err.col}: {message}")


def test_refused_construct_is_pointed_at() -> None:
    text = 'rules:\n  - id: r\n    expression: open.file.path =~ r"/etc/(?=x)"\n'
    with pytest.raises(PolicyError) as info:
        RuleSet.from_text(text, filename="rules/x.yaml")
    assert info.value.col == text.splitlines()[2].index("(?=") + 1


@pytest.mark.parametrize(
    ("expr", "path", "expected"),
    [
        (r'open.file.path =~ r"/etc/.*"', "/etc/a\nb", True),  # `.` matches a newline (DOTALL)
        (r'open.file.path =~ r"/etc/caf.\.conf"', "/etc/caf\udce9.conf", True),  # a non-UTF-8 byte
        (r'open.file.path =~ r"/etc/caf\.conf"', "/etc/caf\udce9.conf", False),
        (r'open.file.path =~ r"/etc/[[:alpha:]]+\d"', "/etc/abc1", True),
        (r'open.file.path =~ r"(?i)/ETC/X"', "/etc/x", True),
        (r'open.file.path =~ r"/etc/x"', "/etc/x/y", False),  # whole value
        ('open.file.path =~ "/etc/*.conf"', "/etc/a b+(c)[d]{e}$^|.conf", True),  # literal punctuation
        ('open.file.path =~ "/etc/*.conf"', "/etc/d/a.conf", False),
        ('open.file.path =~ "/etc/**/x"', "/etc/x", True),
        ('open.file.path in ["/e/*", r"/f/\\d+"]', "/f/12", True),
    ],
)
def test_dialect(expr: str, path: str, expected: bool) -> None:
    assert matches(expr, make_event("open", path, flags=O_WRONLY)) is expected
