"""Smoke test of bench/scan_startup.py: it runs, and its table says what the scans did (no timing)."""

from __future__ import annotations

from bench import scan_startup


def test_scan_bench_reports_each_case(tmp_path, capsys):
    scan_startup.main(["--files", "200", "--size", "64", "--dir", str(tmp_path / "tree")])
    rows = [line.split(" | ") for line in capsys.readouterr().out.splitlines() if line.startswith("| ")][1:]
    cases = {(r[0].lstrip("| "), r[1]): r for r in rows}
    assert set(cases) == {
        (case, limits)
        for case in ("first run (baseline)", "restart, nothing changed", "restart, 2 files rewritten")
        for limits in ("none", "default")
    }
    for limits in ("none", "default"):
        assert cases[("first run (baseline)", limits)][5] == "200"  # hashed
        assert cases[("restart, nothing changed", limits)][5] == "0"  # nothing read again
        assert cases[("restart, 2 files rewritten", limits)][-1].rstrip(" |") == "2"  # findings
    assert not (tmp_path / "tree").exists()
