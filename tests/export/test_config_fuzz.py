"""The config loader under hostile input: random YAML, random bytes and oversized or deeply nested
files only ever give a ConfigError naming the file (and the spot), never another exception."""

from __future__ import annotations

import string
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from otel_fim.config import ConfigError, load_config

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
KEYS = ["rules", "outputs", "state_dir", "kernel_filter", "status_interval", "otlp", "endpoint", "protocol",
        "spool", "max_records", "sync", "plugins", "disable", "config", "headers", "duration",
        "ringbuf_pages", "backlog_mib", "log_level", "timeout", "x"]  # fmt: skip

yaml_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(KEYS), inner, max_size=5),
    max_leaves=25,
)


def only_config_errors(path: Path) -> None:
    try:
        load_config(path)
    except ConfigError as err:
        assert str(err).startswith(str(path)), str(err)


@FUZZ
@given(yaml_values)
def test_random_yaml_gives_config_errors_only(
    tmp_path_factory: pytest.TempPathFactory, value: object
) -> None:
    path = tmp_path_factory.mktemp("cfg") / "config.yaml"
    path.write_text(yaml.safe_dump(value))
    only_config_errors(path)


@FUZZ
@given(st.binary(max_size=300) | st.text(alphabet=string.printable + "{}[]&*!|>'\"%@`é", max_size=300))
def test_random_bytes_give_config_errors_only(
    tmp_path_factory: pytest.TempPathFactory, data: bytes | str
) -> None:
    path = tmp_path_factory.mktemp("cfg") / "config.yaml"
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    only_config_errors(path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("plugins:\n  config: " + "[" * 5000 + "]" * 5000 + "\n", ":2:73: nested more than 64 levels deep"),
        ("plugins:\n  config: &a {x: *a}\n", ":2:18: alias *a refers to a node that contains it"),
        ("# " + "x" * (1 << 20) + "\n", ": the file is"),
        (b"rules: [\xff]\n", ": not UTF-8 text"),
    ],
)
def test_config_limits(tmp_path: Path, text: str | bytes, message: str) -> None:
    path = tmp_path / "config.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}{message}"), str(info.value)


def test_dead_letter_and_pending_settings(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("otlp:\n  spool:\n    max_dead_letters: 50\n    pending_timeout: 2.5\n")
    options = load_config(path).otlp_output_options()
    assert (options["max_dead_letters"], options["pending_timeout"]) == (50, 2.5)
    path.write_text("otlp:\n  spool:\n    max_dead_letters: 0\n")
    with pytest.raises(ConfigError, match=r":3:23: otlp.spool.max_dead_letters: must be > 0"):
        load_config(path)
