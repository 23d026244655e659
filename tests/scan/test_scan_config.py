"""`scan:` and `canary:` in the config file: checked like every other key (FILE:LINE:COL)."""

from __future__ import annotations

import argparse

import pytest

from otel_fim.commands.run import add_config_arguments, merge_cli
from otel_fim.config import ConfigError, load_config


def test_scan_and_canary_settings_load_and_flags_override(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("scan:\n  interval: 300\n  bytes_per_s: 1048576\ncanary: {interval: 30, deadline: 5}\n")
    config = load_config(path)
    assert (config.scan.interval, config.scan.bytes_per_s, config.scan.enabled) == (300, 1048576, True)
    assert (config.canary.interval, config.canary.deadline) == (30, 5)
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    merged = merge_cli(config, parser.parse_args(["--scan-interval", "60", "--no-scan", "--no-canary"]))
    assert (merged.scan.interval, merged.scan.enabled, merged.canary.enabled) == (60, False, False)
    assert config.scan.enabled and config.scan.interval == 300  # the loaded config is not changed


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("scan:\n  interval: -1\n", ":2:13: scan.interval: must be >= 0"),
        ("canary:\n  deadline: 0\n", ":2:13: canary.deadline: must be > 0"),
        ("scan:\n  intervall: 5\n", ":2:3: scan.intervall: unknown key"),
    ],
)
def test_bad_values_name_the_spot(tmp_path, text, problem):
    path = tmp_path / "config.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert f"{path}{problem}" in str(err.value)
