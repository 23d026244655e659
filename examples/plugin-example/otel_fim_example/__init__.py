"""A minimal otel-fim plugin.

* enricher: tags every matched event with the owning team (from the plugin's config) and the
  file's extension -> attributes `otel_fim.plugin.example.team`, `otel_fim.plugin.example.extension`;
* rule field: `example.extension`, usable in rule expressions;
* rule action: `log_line`, appends one line per match to a file named by the rule.

    # otel-fim.yaml
    plugins:
      config:
        example: {team: platform-security}
"""

from __future__ import annotations

import os

from otel_fim.plugin_api import ActionSchema, Param, PluginField, hookimpl

_team = "unknown"


@hookimpl
def otel_fim_startup(plugin_config):
    global _team
    unknown = set(plugin_config) - {"team"}
    if unknown:
        raise ValueError(f"unknown settings: {', '.join(sorted(unknown))}")
    _team = str(plugin_config.get("team", _team))


def _extension(event):
    return os.path.splitext(event.file.name)[1].lstrip(".") or None


@hookimpl
def otel_fim_rule_fields():
    return [PluginField("example.extension", "str", _extension, doc="the file name's extension")]


@hookimpl
def otel_fim_enrich(event, matches):
    return {"team": _team, "extension": _extension(event)}


@hookimpl
def otel_fim_rule_actions():
    return {"log_line": ActionSchema({"path": Param(str, required=True)}, doc="append a line per match")}


@hookimpl
def otel_fim_run_action(params, match, record):
    with open(params["path"], "a", encoding="utf-8") as f:
        f.write(f"{match.rule_id} {record['body']}\n")
