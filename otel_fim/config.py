"""The agent's YAML config file: everything the `run` flags set, with flags overriding the file.

    config = merge_cli(load_config(args.config) if args.config else AgentConfig(), args)  # commands.run

`load_config` checks every key and type against the dataclasses below and reports a mistake as
`FILE:LINE:COL: key: problem`, so a typo never silently falls back to a default. See
`examples/config.yaml` for a documented file.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from otel_fim import bounded_yaml
from otel_fim.canary.settings import CanaryConfig
from otel_fim.export.endpoint import PROTOCOLS, OtlpEndpoint, endpoint_configured
from otel_fim.kernel.coalescing import DEFAULT_WINDOW_MS as DEFAULT_COALESCE_MS
from otel_fim.kernel.sensor import DEFAULT_BACKLOG_MIB, DEFAULT_RINGBUF_PAGES
from otel_fim.scan.settings import ScanConfig

DEFAULT_STATE_DIR = "/var/lib/otel-fim"


@dataclass
class SpoolConfig:
    max_records: int = 100_000
    max_bytes: int = 128 * 1024 * 1024
    sync: str = "normal"  # normal: survives a killed agent; full: also power loss (fsync per event)
    max_dead_letters: int = 10_000  # poison records kept (`otel-fim spool list`); the oldest go first
    pending_timeout: float = 300.0  # seconds a match spooled ahead waits for its plugins, then sent marked


@dataclass
class OtlpConfig:
    endpoint: str | None = None  # base URL; unset: OTEL_EXPORTER_OTLP_ENDPOINT
    # grpc | http/protobuf; unset: OTEL_EXPORTER_OTLP_PROTOCOL, else http/protobuf
    protocol: str | None = None
    headers: dict[str, str] = field(default_factory=dict)  # merged over OTEL_EXPORTER_OTLP_HEADERS
    timeout: float | None = None  # seconds per export request; unset: OTEL_EXPORTER_OTLP_TIMEOUT or 10
    insecure: bool | None = None  # gRPC: plaintext; unset: from the URL scheme (http:// = plaintext)
    compression: str | None = None  # gzip | none
    batch_size: int = 512
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    close_timeout: float = 5.0
    spool: SpoolConfig = field(default_factory=SpoolConfig)
    metrics: bool = True  # export otel-fim's own metrics
    metrics_interval: float = 60.0  # seconds

    def endpoint_settings(self) -> OtlpEndpoint:
        return OtlpEndpoint(
            self.endpoint, self.protocol, dict(self.headers), self.timeout, self.insecure, self.compression
        )


@dataclass
class PluginsConfig:
    enable: list[str] = field(default_factory=list)  # only these (empty: every installed plugin)
    disable: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)  # plugin name -> its own settings


@dataclass
class RedactionConfig:
    """Secrets in exported command lines become REDACTED (see otel_fim/export/redact.py)."""

    enabled: bool = True
    options: list[str] = field(default_factory=list)  # extra options whose value is secret: --db-key
    patterns: list[str] = field(default_factory=list)  # extra regexes; group `secret` (or all) replaced


@dataclass
class AgentConfig:
    rules: list[str] = field(default_factory=list)  # rule files or directories
    outputs: list[str] = field(default_factory=list)  # console | jsonl:PATH | otlp; see `effective_outputs`
    duration: float | None = None  # seconds to run, then exit; unset: until signalled
    ready_file: str | None = None  # written once the sensor is attached
    stats_file: str | None = None  # final counters as JSON on exit
    state_dir: str = DEFAULT_STATE_DIR  # the OTLP spool lives here
    kernel_filter: bool = True  # approvers/discarders in the kernel
    status_interval: float = 30.0  # seconds between status lines; 0: never
    ringbuf_pages: int = DEFAULT_RINGBUF_PAGES  # the kernel's ring buffer (a power of two; locked)
    backlog_mib: int = DEFAULT_BACKLOG_MIB  # records read from the kernel, not yet handled
    coalesce_ms: int = DEFAULT_COALESCE_MS  # identical repeats in this window: one record + a count
    log_level: str = "info"
    # Without rules every file event on the host is reported: OTLP export of that needs this on.
    all_events: bool = False
    default_rules: bool = False  # also load the default policy installed with the package
    redaction: RedactionConfig = field(default_factory=RedactionConfig)
    otlp: OtlpConfig = field(default_factory=OtlpConfig)
    plugins: PluginsConfig = field(default_factory=PluginsConfig)
    scan: ScanConfig = field(default_factory=ScanConfig)  # baseline and scans (otel_fim.scan)
    canary: CanaryConfig = field(default_factory=CanaryConfig)  # proven liveness (otel_fim.canary)
    source: str | None = None  # the file this came from (not a key)

    def effective_outputs(self) -> list[str]:
        """The outputs to build: as configured, else `otlp` when an endpoint is set, else `console`."""
        if self.outputs:
            return list(self.outputs)
        return ["otlp"] if endpoint_configured(self.otlp.endpoint) else ["console"]

    def refuse_export(self, has_rules: bool) -> str | None:
        """Why this config must not run, or None. Without rules every file event on the host is a
        record: shipping that to a backend takes an explicit `all_events` (console/jsonl may explore)."""
        if has_rules or self.all_events or "otlp" not in self.effective_outputs():
            return None
        return (
            "no rules given: refusing to export every file event on this host over OTLP; "
            "pass --rules PATH, or --all-events (all_events: true) if that is really wanted"
        )

    def otlp_output_options(self, metrics: Any = None) -> dict[str, Any]:
        """Keyword options for `build_output("otlp", **options)` (see `OtlpOutput`)."""
        o = self.otlp
        options: dict[str, Any] = {
            "endpoint": o.endpoint,
            "protocol": o.protocol,
            "headers": dict(o.headers),
            "timeout": o.timeout,
            "insecure": o.insecure,
            "compression": o.compression,
            "state_dir": self.state_dir,
            "spool_max_records": o.spool.max_records,
            "spool_max_bytes": o.spool.max_bytes,
            "spool_sync": o.spool.sync.upper(),
            "max_dead_letters": o.spool.max_dead_letters,
            "pending_timeout": o.spool.pending_timeout,
            "batch_size": o.batch_size,
            "backoff_initial": o.backoff_initial,
            "backoff_max": o.backoff_max,
            "close_timeout": o.close_timeout,
        }
        if metrics is not None:
            options["metrics"] = metrics
        return options


class ConfigError(ValueError):
    pass


# -- loading -------------------------------------------------------------------------------------

_NOT_KEYS = {"source"}
_CHOICES: dict[str, tuple[str, ...]] = {
    "otlp.protocol": PROTOCOLS,
    "otlp.compression": ("gzip", "none"),
    "otlp.spool.sync": ("normal", "full"),
    "log_level": ("debug", "info", "warning", "error"),
}
_POSITIVE = {
    "otlp.batch_size", "otlp.backoff_initial", "otlp.backoff_max", "otlp.spool.max_records",
    "otlp.spool.max_bytes", "otlp.spool.max_dead_letters", "otlp.spool.pending_timeout",
    "otlp.metrics_interval", "otlp.timeout", "duration", "ringbuf_pages", "backlog_mib",
    "scan.hash_max_bytes", "canary.interval", "canary.deadline",
}  # fmt: skip
_POWER_OF_TWO = {"ringbuf_pages"}
_NON_NEGATIVE = {
    "status_interval", "otlp.close_timeout", "scan.interval", "scan.bytes_per_s", "scan.files_per_s",
    "coalesce_ms",
}  # fmt: skip


def load_config(path: str | Path) -> AgentConfig:
    path = Path(path)
    try:
        with path.open("rb") as f:
            data = f.read(bounded_yaml.MAX_FILE_BYTES + 1)
        text = data.decode("utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}: {exc.reason})") from exc
    try:
        root = bounded_yaml.compose(text)
    except bounded_yaml.YamlLimitError as exc:
        where = f"{path}:{exc.line}:{exc.col}" if exc.line else str(path)
        raise ConfigError(f"{where}: {exc.message}") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise ConfigError(f"{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from exc
    if root is None:  # an empty file is the defaults
        return AgentConfig(source=str(path))
    config = _Reader(str(path)).dataclass(AgentConfig, root, "")
    config.source = str(path)
    return config


class _Reader:
    def __init__(self, filename: str) -> None:
        self.filename = filename

    def error(self, node: Node, key: str, problem: str) -> ConfigError:
        mark = node.start_mark
        label = f"{key}: " if key else ""
        return ConfigError(f"{self.filename}:{mark.line + 1}:{mark.column + 1}: {label}{problem}")

    def dataclass(self, cls: type, node: Node, prefix: str) -> Any:
        if not isinstance(node, MappingNode):
            raise self.error(node, prefix.rstrip("."), "expected a mapping")
        hints = typing.get_type_hints(cls)
        fields = {f.name: f for f in dataclasses.fields(cls) if f.name not in _NOT_KEYS}
        values: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, ScalarNode) else None
            name = key.replace("-", "_") if isinstance(key, str) else None
            if name not in fields:
                known = ", ".join(sorted(fields))
                raise self.error(key_node, f"{prefix}{key}", f"unknown key (expected one of: {known})")
            if name in values:
                raise self.error(key_node, f"{prefix}{key}", "duplicate key")
            dotted = f"{prefix}{name}"
            values[name] = self.value(hints[name], value_node, dotted)
            self.check(values[name], value_node, dotted)
        return cls(**values)

    def check(self, value: Any, node: Node, key: str) -> None:
        if value is None:
            return
        if key in _CHOICES and value not in _CHOICES[key]:
            raise self.error(node, key, f"{value!r} is not one of {', '.join(_CHOICES[key])}")
        if key in _POSITIVE and value <= 0:
            raise self.error(node, key, "must be > 0")
        if key in _NON_NEGATIVE and value < 0:
            raise self.error(node, key, "must be >= 0")
        if key in _POWER_OF_TWO and value & (value - 1):
            raise self.error(node, key, f"must be a power of two, got {value}")
        if key == "redaction.patterns":
            items = node.value if isinstance(node, SequenceNode) else [node]
            for pattern, item in zip(value, items, strict=True):
                try:
                    re.compile(pattern)
                except re.error as exc:
                    raise self.error(item, key, f"not a regular expression: {exc}") from None

    def value(self, hint: Any, node: Node, key: str) -> Any:
        origin, args = typing.get_origin(hint), typing.get_args(hint)
        if origin in (typing.Union, types.UnionType):
            if _is_null(node) and type(None) in args:
                return None
            (inner,) = [a for a in args if a is not type(None)]
            return self.value(inner, node, key)
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            return self.dataclass(hint, node, f"{key}.")
        if origin is list:
            if isinstance(node, ScalarNode) and not _is_null(node) and args[0] is str:
                return [self.scalar(str, node, key)]  # `rules: /etc/otel-fim/rules` means one entry
            if not isinstance(node, SequenceNode):
                raise self.error(node, key, "expected a list")
            return [self.value(args[0], item, key) for item in node.value]
        if origin is dict:
            if not isinstance(node, MappingNode):
                raise self.error(node, key, "expected a mapping")
            if args[1] is Any:
                return SafeConstructor().construct_document(node)
            out = {}
            for k, v in node.value:
                out[self.scalar(str, k, key)] = self.value(args[1], v, f"{key}.{k.value}")
            return out
        return self.scalar(hint, node, key)

    def scalar(self, hint: type, node: Node, key: str) -> Any:
        if not isinstance(node, ScalarNode):
            raise self.error(node, key, f"expected a {hint.__name__}")
        value = SafeConstructor().construct_object(node)
        if hint is str:
            if isinstance(value, (dict, list)) or value is None:
                raise self.error(node, key, "expected a string")
            return str(value) if not isinstance(value, bool) else node.value
        if hint is bool:
            if not isinstance(value, bool):
                raise self.error(node, key, f"expected true or false, not {node.value!r}")
            return value
        if hint is int:
            if isinstance(value, bool) or not isinstance(value, int):
                raise self.error(node, key, f"expected an integer, not {node.value!r}")
            return value
        if hint is float:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise self.error(node, key, f"expected a number, not {node.value!r}")
            return float(value)
        raise self.error(node, key, f"unsupported type {hint}")  # pragma: no cover - schema bug


def _is_null(node: Node) -> bool:
    return isinstance(node, ScalarNode) and node.tag == "tag:yaml.org,2002:null"
