"""Every otel-fim plugin hook, in one place.

A plugin is a module (or object) with functions named like the specs below and marked with
`otel_fim.plugin_api.hookimpl` (the same object as `otel_fim.plugin.hookimpl`); it may implement any
subset, and each implementation may take any subset of the arguments, by name. Bundled plugins (the
repository's `plugins/`) and third-party ones are both found through the `otel_fim` entry-point
group (see README.md#plugins).

Where hooks run and what a failure does:

* Startup and registration hooks (`otel_fim_startup`, `otel_fim_rule_fields`,
  `otel_fim_rule_actions`, `otel_fim_rules_loaded`) run on the main thread before the sensor is
  attached. A plugin whose `otel_fim_startup` raises is logged, counted and unloaded; the agent
  runs on without it.
* Per-event hooks (`otel_fim_enrich`, `otel_fim_notify`, `otel_fim_run_action`) run on the plugin
  worker thread, never on the ring-buffer consumer, in this order for every matched event:
  enrich -> the outputs get the record -> notify -> actions. Each implementation is called on its
  own: one that raises is logged with the plugin's name, counted (`otel_fim.plugin.errors`) and the
  others still run. Hook wrappers are not supported for per-event hooks.
* Rule field getters (`otel_fim_rule_fields`) are the exception: they run during rule evaluation,
  on the consumer thread, so they must be cheap.

No hook uses `firstresult`: every implementation is called and each result is used.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from otel_fim.plugin import PROJECT, hookimpl, hookspec

if TYPE_CHECKING:
    from otel_fim.config import AgentConfig
    from otel_fim.event import Event
    from otel_fim.plugin.api import ActionSchema, PluginField
    from otel_fim.rules.match import Match
    from otel_fim.rules.ruleset import RuleSet

__all__ = ["PROJECT", "hookimpl", "hookspec"]  # the markers, re-exported for old imports


@hookspec
def otel_fim_startup(config: AgentConfig, plugin_config: Mapping[str, Any], state_dir: Path) -> None:
    """Called once when the agent starts, before rules are loaded and before any other hook.

    config: the whole agent configuration (read-only).
    plugin_config: this plugin's own section, `plugins.config.<plugin name>` in the config file
        ({} when absent). Validate it here and raise ValueError with a clear message when it is
        wrong: the plugin is then logged as failed and unloaded.
    state_dir: `<state_dir>/plugins/<plugin name>`, where the plugin may keep files. It is not
        created for you: create it (and `<state_dir>/plugins`) with mode 0700 when you need it.

    Returns nothing."""


@hookspec
def otel_fim_rule_fields() -> Iterable[PluginField] | None:
    """Called once at startup, after `otel_fim_startup`, before rules are loaded.

    Return the extra rule fields this plugin provides (`PluginField`s), usable in rule expressions
    like built-in fields. A name that is already taken is a startup error for this plugin (logged,
    counted, the field is skipped). The kernel filter treats plugin fields as unknown: a rule
    using one in a disjunction keeps the kernel from dropping events for it, which is always sound."""


@hookspec
def otel_fim_rule_actions() -> Mapping[str, ActionSchema] | None:
    """Called once at startup, before rules are loaded.

    Return the rule actions this plugin implements: `{action name: ActionSchema}`. Rules may then
    list them (`actions: [{name: {params}}]`); a rule naming an action no plugin registered, or
    with parameters the schema rejects, fails to load with the file:line of the action. Two plugins
    registering the same name is a startup error for the second."""


@hookspec
def otel_fim_rules_loaded(ruleset: RuleSet | None) -> None:
    """Called after the rule set was loaded (at startup, and again whenever rules are reloaded),
    before events that rule set matches reach any per-event hook.

    ruleset: the `RuleSet` (`ruleset.approvers(event_type)` lists the paths rules watch), or None
        when the agent runs without rules.

    Returns nothing. Runs on the main thread: keep it short, or start your own thread."""


@hookspec
def otel_fim_enrich(event: Event, matches: Sequence[Match]) -> Mapping[str, Any] | None:
    """Called on the plugin worker for every event that matched a rule, before its log record is
    built: the record reaches every output (OTLP, jsonl, console) with what enrichers returned.

    event: the event (do not modify it; `event.extra` holds what earlier enrichers returned).
    matches: the rules that matched, most specific first; `match.actions` lists what the rule asked
        for (an enricher may act only when its rule lists its action, see `actions_named`).

    Return a flat mapping `{key: value}` (values: str, int, float, bool or a list of those) or
    None. It becomes the attributes `otel_fim.plugin.<plugin name>.<key>`; other values are turned into
    strings. Called even when the event's file is gone: check before reading."""


@hookspec
def otel_fim_notify(event: Event, matches: Sequence[Match], record: Mapping[str, Any]) -> None:
    """Called on the plugin worker after the record of a matched event was handed to the outputs:
    the place for alert sinks (page someone, post to chat).

    record: the log record exactly as the outputs got it (`attributes` includes enrichments).

    Returns nothing. Keep it bounded in time: the worker serves one event at a time, and when its
    queue is full new events are exported without enrichment."""


@hookspec
def otel_fim_run_action(
    action: str, params: Mapping[str, Any], event: Event, match: Match, record: Mapping[str, Any]
) -> None:
    """Called on the plugin worker, after notify, once for each action a matched rule lists, and
    only on the plugin that registered `action` in `otel_fim_rule_actions`.

    action: the action's name.
    params: the rule's parameters with the schema's defaults filled in.
    match: the rule that asked for it (one event matching two rules that both list an action runs
        it twice).
    record: the log record the outputs got.

    Returns nothing; raise to report a failure (logged and counted)."""


@hookspec
def otel_fim_shutdown() -> None:
    """Called once when the agent stops, after the worker queue was drained (bounded wait) and
    before the outputs close. Release resources here. Returns nothing."""
