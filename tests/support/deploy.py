"""The example deployment's facts the deploy tests share: the systemd unit and its settings."""

from __future__ import annotations

import re

from tests.support.agent_harness import REPO

UNIT = REPO / "examples/deploy/systemd/otel-fim.service"


def unit_settings() -> dict[str, str]:
    settings: dict[str, str] = {}
    for line in UNIT.read_text().splitlines():
        if re.match(r"^[A-Za-z]+=", line):
            key, _, value = line.partition("=")
            settings[key] = value
    return settings
