"""The plugin manager: finds, loads and isolates plugins.

    plugins = load_plugins(config)                              # startup hooks, fields, actions
    ruleset = RuleSet.load(paths, plugins.known_actions(), plugins.fields)
    emitter = Emitter(outputs)
    stage = plugins.start(emitter, ruleset, metrics)            # rules_loaded, then the worker
    pipeline = Pipeline(emitter, ruleset, stage=stage)
    ...
    pipeline.flush()   # the worker hands what is queued to the outputs
    pipeline.close()   # drains and stops the worker, runs the shutdown hooks, closes the outputs

(`otel_fim.wiring` does exactly this for the agent.)

Where plugins come from: the entry points of the group `otel_fim`. The bundled plugins (the
repository's `plugins/`, installed as the package `otel_fim_plugins`) are declared in otel-fim's
own pyproject.toml and listed as `bundled`; a third-party plugin declares its entry point in its
own pyproject.toml (`[project.entry-points.otel_fim]`) and is listed as `entrypoint`.

`plugins.enable` (only these; empty: all) and `plugins.disable` (never these) in the config file
choose by name; a disabled plugin is not even imported. `plugins.config.<name>` is handed to that
plugin's `otel_fim_startup`, and `plugins.config.stage` sets the queue (`queue_size`,
`overflow_wait`).

A plugin that fails to import, register or start is logged, listed as failed and left out; the
agent runs on. An exception in a per-event hook is logged with the plugin's name and counted
(`UserCounters.plugin_errors`, the metric `otel_fim.plugin.errors`); the other plugins still run.
"""

from __future__ import annotations

import importlib.metadata
import logging
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pluggy

from otel_fim.event import Event
from otel_fim.plugin import PROJECT, hookspecs
from otel_fim.plugin.api import ATTRIBUTE_PREFIX, ActionSchema, PluginField
from otel_fim.plugin.stage import DEFAULT_OVERFLOW_WAIT, DEFAULT_QUEUE_SIZE, PluginStage
from otel_fim.rules.field_catalog import standard_fields
from otel_fim.rules.fields import FieldRegistry, FieldType
from otel_fim.rules.match import Match

if TYPE_CHECKING:
    from otel_fim.config import AgentConfig
    from otel_fim.pipeline import Emitter

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = PROJECT
BUNDLED_DISTRIBUTION = "otel-fim"  # entry points of this distribution are the bundled plugins
STAGE_KEY = "stage"  # plugins.config.stage: the queue's settings, not a plugin
PER_EVENT_HOOKS = ("otel_fim_enrich", "otel_fim_notify", "otel_fim_run_action")


class PluginError(ValueError):
    """A plugin setup problem that stops the agent (bad `plugins:` config)."""


@dataclass
class PluginInfo:
    name: str
    source: str  # bundled | entrypoint | internal
    where: str  # file, or "distribution version (module)"
    status: str = "loaded"  # loaded | disabled | failed: ...
    hooks: list[str] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)
    fields: list[str] = field(default_factory=list)

    @property
    def loaded(self) -> bool:
        return self.status == "loaded"


@dataclass
class PluginCounters:
    errors: Counter[tuple[str, str]] = field(default_factory=Counter)  # (plugin, hook) -> n
    actions: Counter[tuple[str, str]] = field(default_factory=Counter)  # (action, ok|error) -> n

    @property
    def total_errors(self) -> int:
        return sum(self.errors.values())


# -- discovery -----------------------------------------------------------------------------------


def _entry_points() -> list[importlib.metadata.EntryPoint]:
    return sorted(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name)


def _chosen(name: str, enable: Sequence[str], disable: Sequence[str]) -> bool:
    return (not enable or name in enable) and name not in disable


# -- the manager ---------------------------------------------------------------------------------


class Plugins:
    """The loaded plugins, the actions and fields they registered, and isolated hook calls."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(PROJECT)
        self.pm.add_hookspecs(hookspecs)
        # The rule fields of this agent: the standard ones plus what its plugins register.
        self.fields: FieldRegistry = standard_fields().extended()
        self.infos: dict[str, PluginInfo] = {}
        self.actions: dict[str, tuple[str, ActionSchema]] = {}  # action -> (plugin, schema)
        self.counters = PluginCounters()
        self.user_counters: Any = None  # the pipeline's UserCounters, once started
        self.metrics: Any = None  # FimMetrics, once started
        self.stage: PluginStage | None = None
        self.stage_config: dict[str, Any] = {}
        self._lock = threading.Lock()

    # -- registration ------------------------------------------------------------------------------

    def add(self, name: str, plugin: object, source: str = "internal", where: str = "") -> PluginInfo:
        """Register one plugin object (module, class instance). A plugin pluggy rejects (unknown
        hook name, arguments the spec does not have) is listed as failed, not raised."""
        info = PluginInfo(name, source, where or _where(plugin))
        self.infos[name] = info
        try:
            if self.pm.has_plugin(name):
                raise ValueError(f"a plugin named {name!r} is already registered")
            self.pm.register(plugin, name=name)
            _check_hooks(self.pm, plugin, name)
        except Exception as exc:
            self._failed(info, "register", exc, plugin)
            return info
        info.hooks = sorted(
            h.name for h in self.pm.get_hookcallers(plugin) or [] if h.name.startswith("otel_fim_")
        )
        return info

    def _failed(self, info: PluginInfo, stage: str, exc: BaseException, plugin: object = None) -> None:
        info.status = f"failed: {stage}: {exc}"
        self.count_error(info.name, f"otel_fim_{stage}" if stage != "import" else "import")
        log.error("plugin %s: %s failed: %s", info.name, stage, exc, exc_info=exc)
        target = plugin if plugin is not None else self.pm.get_plugin(info.name)
        if target is not None and self.pm.is_registered(target):
            self.pm.unregister(target)

    def discover(self, enable: Sequence[str] = (), disable: Sequence[str] = (), *, bundled: bool = True,
                 entry_points: bool = True) -> None:  # fmt: skip
        """Load the entry points of the `otel_fim` group that `enable`/`disable` choose: the bundled
        plugins (`bundled=False` leaves them out) and third-party ones (`entry_points=False`)."""
        for ep in _entry_points():
            is_bundled = ep.dist is not None and ep.dist.name == BUNDLED_DISTRIBUTION
            if not (bundled if is_bundled else entry_points):
                continue
            source = "bundled" if is_bundled else "entrypoint"
            dist = f"{ep.dist.name} {ep.dist.version}" if ep.dist is not None else "?"
            where = f"{dist} ({ep.value})"
            if not _chosen(ep.name, enable, disable):
                self.infos.setdefault(ep.name, PluginInfo(ep.name, source, where, "disabled"))
                continue
            try:
                plugin = ep.load()
            except Exception as exc:
                self._failed(self._info(ep.name, source, where), "import", exc)
                continue
            self.add(ep.name, plugin, source, where)

    def _info(self, name: str, source: str, where: str) -> PluginInfo:
        info = self.infos[name] = PluginInfo(name, source, where)
        return info

    def loaded(self) -> list[str]:
        return [n for n, i in self.infos.items() if i.loaded]

    # -- startup -----------------------------------------------------------------------------------

    def startup(self, config: AgentConfig) -> None:
        """`otel_fim_startup` on every plugin (one that raises is unloaded), then collect the rule
        fields and actions they provide."""
        state_root = Path(config.state_dir) / "plugins"
        for impl in self._impls("otel_fim_startup"):
            name = impl.plugin_name
            kwargs = {
                "config": config,
                "plugin_config": dict(config.plugins.config.get(name) or {}),
                "state_dir": state_root / name,
            }
            try:
                impl.function(*[kwargs[a] for a in impl.argnames])
            except Exception as exc:
                self._failed(self.infos[name], "startup", exc)
        for name, result in self.call_each("otel_fim_rule_actions"):
            for action, schema in dict(result or {}).items():
                self._add_action(name, action, schema)
        for name, result in self.call_each("otel_fim_rule_fields"):
            for spec in result or ():
                self._add_field(name, spec)

    def _add_action(self, plugin: str, action: str, schema: object) -> None:
        if action in self.actions:
            owner = self.actions[action][0]
            self.count_error(plugin, "otel_fim_rule_actions")
            log.error("plugin %s: action %r is already registered by %s; ignored", plugin, action, owner)
            return
        if schema is None:
            schema = ActionSchema()
        if not isinstance(schema, ActionSchema):
            self.count_error(plugin, "otel_fim_rule_actions")
            log.error("plugin %s: action %r: the schema must be an ActionSchema", plugin, action)
            return
        self.actions[action] = (plugin, schema)
        self.infos[plugin].actions.append(action)

    def _add_field(self, plugin: str, spec: PluginField) -> None:
        try:
            if not isinstance(spec, PluginField):
                raise TypeError("expected a PluginField")
            if spec.name in self.fields:
                raise ValueError(f"field {spec.name!r} already exists")
            # key=None: opaque to the approver/discarder analyses, so the kernel filter stays sound.
            self.fields.register(
                spec.name, FieldType(spec.type), self._safe_getter(plugin, spec), spec.event_type,
                key=None, doc=spec.doc or f"from plugin {plugin}",
            )  # fmt: skip
        except Exception as exc:
            self.count_error(plugin, "otel_fim_rule_fields")
            log.error("plugin %s: rule field %r not registered: %s", plugin, getattr(spec, "name", spec), exc)
            return
        self.infos[plugin].fields.append(spec.name)

    def _safe_getter(self, plugin: str, spec: PluginField) -> Callable[[Event], object]:
        getter, hook = spec.getter, f"field:{spec.name}"

        def get(event: Event) -> object:
            try:
                return getter(event)
            except Exception:
                self._hook_failed(plugin, hook)
                return None

        return get

    def known_actions(self) -> dict[str, ActionSchema]:
        """For `RuleSet.load(paths, known_actions=...)`: unknown actions and bad parameters are
        rule load errors."""
        return {action: schema for action, (_, schema) in self.actions.items()}

    # -- running -----------------------------------------------------------------------------------

    def start(self, emitter: Emitter, ruleset: Any = None, metrics: Any = None) -> PluginStage | None:
        """Tell plugins the rules, then start the worker that enriches matched events and hands
        them to `emitter`: the stage to give the `Pipeline`. None when no plugin is loaded."""
        self.user_counters = emitter.counters
        self.metrics = metrics
        pending = self.counters.total_errors  # startup failures counted before the pipeline existed
        if pending and self.user_counters is not None:
            self.user_counters.plugin_errors += pending
        self.rules_loaded(ruleset)
        if not self.loaded():
            return None
        self.stage = PluginStage(
            self,
            emitter.emit,
            queue_size=int(self.stage_config.get("queue_size", DEFAULT_QUEUE_SIZE)),
            overflow_wait=float(self.stage_config.get("overflow_wait", DEFAULT_OVERFLOW_WAIT)),
            on_overflow=self._overflowed,
        )
        return self.stage

    def rules_loaded(self, ruleset: Any) -> None:
        """`otel_fim_rules_loaded`: at start, and by whoever reloads the rules."""
        self.call_each("otel_fim_rules_loaded", ruleset=ruleset)

    def enrich(self, event: Event, matches: Sequence[Match]) -> None:
        for name, result in self.call_each("otel_fim_enrich", event=event, matches=matches):
            if result:
                try:
                    values = _attribute_values(result)
                except Exception:
                    self._hook_failed(name, "otel_fim_enrich")
                    continue
                namespace = f"{ATTRIBUTE_PREFIX}{name}"
                event.extra = {**event.extra, namespace: {**event.extra.get(namespace, {}), **values}}  # type: ignore[dict-item]

    def notify(self, event: Event, matches: Sequence[Match], record: Mapping[str, Any]) -> None:
        self.call_each("otel_fim_notify", event=event, matches=matches, record=record)

    def run_actions(self, event: Event, matches: Sequence[Match], record: Mapping[str, Any]) -> None:
        for match in matches:
            for action in match.actions:
                for name, params in action.items():
                    self._run_action(name, params or {}, event, match, record)

    def _run_action(
        self, action: str, params: Mapping[str, Any], event: Event, match: Match, record: Mapping[str, Any]
    ) -> None:
        owner = self.actions.get(action)
        if owner is None:  # rules loaded without known_actions: nothing registered it
            log.warning("rule %s asks for action %r, which no loaded plugin provides", match.rule_id, action)
            return
        plugin, schema = owner
        kwargs = {
            "action": action, "params": schema.resolve(params), "event": event, "match": match,
            "record": record,
        }  # fmt: skip
        ok = True
        for impl in self._impls("otel_fim_run_action"):
            if impl.plugin_name != plugin:
                continue
            try:
                impl.function(*[kwargs[a] for a in impl.argnames])
            except Exception:
                ok = False
                self._hook_failed(plugin, "otel_fim_run_action")
        with self._lock:
            self.counters.actions[(action, "ok" if ok else "error")] += 1

    def call_each(self, hook: str, **kwargs: Any) -> list[tuple[str, Any]]:
        """Call every implementation of `hook` on its own, in pluggy's order; an exception is
        logged with the plugin's name and counted, and the next implementation still runs."""
        results = []
        for impl in self._impls(hook):
            try:
                results.append((impl.plugin_name, impl.function(*[kwargs[a] for a in impl.argnames])))
            except Exception:
                self._hook_failed(impl.plugin_name, hook)
        return results

    def _impls(self, hook: str) -> list[pluggy.HookImpl]:
        return list(reversed(getattr(self.pm.hook, hook).get_hookimpls()))

    def _hook_failed(self, plugin: str, hook: str) -> None:
        n = self.count_error(plugin, hook)
        if n <= 3 or n % 1000 == 0:
            log.exception("plugin %s: %s raised (%d time%s)", plugin, hook, n, "s" if n > 1 else "")

    def count_error(self, plugin: str, hook: str) -> int:
        with self._lock:
            self.counters.errors[(plugin, hook)] += 1
            n = self.counters.errors[(plugin, hook)]
            if self.user_counters is not None:
                self.user_counters.plugin_errors += 1
        if self.metrics is not None:
            self.metrics.record_plugin_error(plugin, hook)
        return n

    def _overflowed(self) -> None:
        if self.user_counters is not None:
            self.user_counters.plugin_queue_overflow += 1
        if self.metrics is not None:
            self.metrics.record_plugin_overflow()

    def shutdown(self) -> None:
        self.call_each("otel_fim_shutdown")

    def stats(self) -> dict[str, Any]:
        """For the agent's stats file."""
        return {
            "loaded": self.loaded(),
            "errors": {f"{p}/{h}": n for (p, h), n in sorted(self.counters.errors.items())},
            "actions": {f"{a}/{o}": n for (a, o), n in sorted(self.counters.actions.items())},
            "queue_overflow": self.stage.overflowed if self.stage is not None else 0,
            "processed": self.stage.processed if self.stage is not None else 0,
        }


def _check_hooks(pm: pluggy.PluginManager, plugin: object, name: str) -> None:
    """A function named like a hook that does not exist (a typo) is an error, not silence."""
    known = {n for n in dir(hookspecs) if n.startswith("otel_fim_")}
    for attr in dir(plugin):
        if attr.startswith("otel_fim_") and attr not in known and callable(getattr(plugin, attr, None)):
            raise ValueError(f"unknown hook {attr!r} (hooks: {', '.join(sorted(known))})")
    for hook in pm.get_hookcallers(plugin) or []:
        for impl in hook.get_hookimpls():
            if (
                impl.plugin_name == name
                and (impl.hookwrapper or impl.wrapper)
                and hook.name in PER_EVENT_HOOKS
            ):
                raise ValueError(f"{hook.name}: hook wrappers are not supported for per-event hooks")


def _where(plugin: object) -> str:
    file = getattr(plugin, "__file__", None) or getattr(
        sys.modules.get(type(plugin).__module__), "__file__", None
    )
    return str(file) if file else repr(plugin)


_SCALARS = (str, int, float, bool)


def _attribute_values(result: Mapping[str, Any]) -> dict[str, Any]:
    """An enricher's result as OTLP attribute values: scalars and lists of scalars stay, None
    is left out, anything else becomes its str()."""
    out: dict[str, Any] = {}
    for key, value in dict(result).items():
        if value is None:
            continue
        if isinstance(value, _SCALARS):
            out[str(key)] = value
        elif isinstance(value, (list, tuple)) and all(isinstance(v, _SCALARS) for v in value):
            out[str(key)] = list(value)
        else:
            out[str(key)] = str(value)
    return out


def load_plugins(
    config: AgentConfig,
    *,
    bundled: bool = True,
    entry_points: bool = True,
    extra: Iterable[tuple[str, object]] = (),
) -> Plugins:
    """Discover and start the plugins `config.plugins` chooses (`extra`: plugin objects to add,
    for tests and embedding). Raises PluginError for a malformed `plugins:` section."""
    pc = config.plugins
    stage = pc.config.get(STAGE_KEY) or {}
    if not isinstance(stage, dict) or set(stage) - {"queue_size", "overflow_wait"}:
        raise PluginError("plugins.config.stage: expected a mapping with queue_size and/or overflow_wait")
    for key, value in pc.config.items():
        if key != STAGE_KEY and value is not None and not isinstance(value, dict):
            raise PluginError(f"plugins.config.{key}: expected a mapping of that plugin's settings")
    plugins = Plugins()
    plugins.stage_config = dict(stage)
    plugins.discover(pc.enable, pc.disable, bundled=bundled, entry_points=entry_points)
    for name, plugin in extra:
        if _chosen(name, pc.enable, pc.disable):
            plugins.add(name, plugin)
    for name in pc.config:
        if name != STAGE_KEY and name not in plugins.infos:
            log.warning("plugins.config.%s: no plugin of that name is installed", name)
    plugins.startup(config)
    return plugins
