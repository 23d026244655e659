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


def configmap_volume(root, name: str, files: dict[str, str]):
    """Lay out a ConfigMap volume as the kubelet does: `..<name>/` with the files, `..data` pointing
    at it (swapped atomically), each visible file a symlink through `..data`. Returns `root`."""
    import os

    version = root / f"..{name}"
    version.mkdir()
    for file, text in files.items():
        (version / file).write_text(text)
    tmp_link = root / "..data_tmp"
    os.symlink(version.name, tmp_link)
    os.replace(tmp_link, root / "..data")
    for file in files:
        if not (root / file).is_symlink():
            os.symlink(f"..data/{file}", root / file)
    return root
