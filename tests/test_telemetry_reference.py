"""docs/telemetry-reference.md names exactly what the agent emits: every attribute, resource
attribute and metric (with its instrument, unit and attributes), found by running the code
(tests/support/catalog.py). A name in the code but not on the page, or on the page but no longer emitted,
fails here."""

from __future__ import annotations

import re
import sys

from tests.support import catalog

REFERENCE = catalog.REPO / "docs/telemetry-reference.md"
_NAME = re.compile(r"^\| `([^`]+)` \|")


def table_rows(heading: str) -> list[list[str]]:
    """The rows of the first table under `heading` (cells, stripped; header and rule skipped)."""
    text = REFERENCE.read_text()
    start = text.index(f"\n{heading}\n")
    rows, seen_table = [], False
    for line in text[start:].splitlines()[1:]:
        if line.startswith("|"):
            seen_table = True
            rows.append([c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]])
        elif seen_table:
            break
    return rows[2:]


def names(heading: str) -> set[str]:
    return {row[0].strip("`") for row in table_rows(heading)}


def test_attributes_match_the_code():
    documented = names("### Attributes")
    emitted = catalog.emitted_log_attributes()
    patterns = {n for n in documented if "<" in n}
    # A pattern row (`otel_fim.rule.tags.<key>`) covers every emitted name under its prefix.
    covered = {e for e in emitted for p in patterns if e.startswith(p.split("<")[0])}
    plugin_rows = {n for n in documented if n.startswith("otel_fim.plugin.") and "<" not in n}
    assert emitted - documented - (covered - plugin_rows) == set(), "emitted, not documented"
    assert documented - patterns - emitted == set(), "documented, not emitted"


def test_resource_matches_the_code():
    assert names("### Resource") == catalog.resource_attributes()


def test_metrics_match_the_code():
    emitted = catalog.emitted_metrics()
    rows = {row[0].strip("`"): row for row in table_rows("## Metrics")}
    assert set(rows) == set(emitted)
    for name, (_, kind, unit, attributes, _meaning) in rows.items():
        info = emitted[name]
        assert kind == info.kind, name
        assert unit.strip("`") == info.unit, name
        assert set(re.findall(r"`([^`]+)`", attributes)) == info.attributes, name


def test_stage_values_are_documented():
    (row,) = [r for r in table_rows("## Metrics") if r[0] == "`otel_fim.events`"]
    values = catalog.emitted_metrics()["otel_fim.events"].values["otel_fim.stage"]
    assert values <= set(re.findall(r"`([a-z_.]+)`", row[4]))


def test_the_check_can_fail(tmp_path, monkeypatch):
    text = REFERENCE.read_text().replace("| `file.inode` |", "| `file.inode_number` |")
    fake = tmp_path / "reference.md"
    fake.write_text(text)
    monkeypatch.setattr(sys.modules[__name__], "REFERENCE", fake)
    try:
        test_attributes_match_the_code()
    except AssertionError:
        return
    raise AssertionError("a renamed attribute went unnoticed")
