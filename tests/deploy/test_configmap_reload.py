"""A running agent picks up a ConfigMap update of its rules (the `..data` symlink swap) without a
SIGHUP, and a bad new policy keeps the rules in force and says where it is wrong."""

from __future__ import annotations

import re
import time

import pytest

from tests.support.agent_harness import records, start_agent, stop_agent
from tests.support.deploy import configmap_volume


def policy(rule_id: str, path) -> str:
    expression = f'fim.write.file.path == "{path}"'
    return f"version: 1\nrules:\n  - id: {rule_id}\n    expression: {expression}\n    severity: high\n"


def matched_by(out, path, rule_id: str) -> bool:
    return any(
        r["attributes"].get("file.path") == str(path) and r["attributes"].get("security_rule.name") == rule_id
        for r in records(out)
    )


def write_until_matched(out, path, rule_id: str, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        path.write_text(str(time.time()))
        time.sleep(0.5)
        if matched_by(out, path, rule_id):
            return True
    return False


@pytest.mark.kernel
def test_configmap_update_reloads_rules(tmp_path):
    volume = tmp_path / "rules-volume"
    volume.mkdir()
    a, b = tmp_path / "a.conf", tmp_path / "b.conf"
    configmap_volume(volume, "2026_1", {"site.yaml": policy("rule_a", a)})
    proc, out = start_agent(tmp_path, "--rules", str(volume))
    try:
        assert write_until_matched(out, a, "rule_a", 10), "the first policy is not in force"
        configmap_volume(volume, "2026_2", {"site.yaml": policy("rule_b", b)})
        assert write_until_matched(out, b, "rule_b"), "the updated ConfigMap was not picked up"
        broken = policy("broken", "x").replace(' == "x"', " ==")  # line 4: the expression ends early
        configmap_volume(volume, "2026_3", {"site.yaml": broken})
        time.sleep(5)  # two checks of the policy files
        before = len(records(out))
        assert write_until_matched(out, b, "rule_b", 10), "a bad policy must keep the rules in force"
        assert len(records(out)) > before
    finally:
        err = stop_agent(proc)
    assert "policy files changed: reloading the rules" in err
    assert "rule reload failed, the previous rules stay in force" in err
    assert re.search(r"site\.yaml:4:\d+", err), err[-3000:]
