"""The rule benchmark still runs (a tiny instance; the figure itself is in README.md#rules)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from otel_fim.rules import RuleSet

DEFAULT = Path(__file__).resolve().parents[2] / "rules" / "default.yaml"
BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench_rules.py"


def test_bench_runs(capsys: pytest.CaptureFixture[str]) -> None:
    spec = importlib.util.spec_from_file_location("bench_rules", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--events", "3000", "--rounds", "1"]) == 0
    out = capsys.readouterr().out
    rules = len(RuleSet.load([DEFAULT]))
    assert f"{rules} rules, 3000 events" in out and "events/s" in out
