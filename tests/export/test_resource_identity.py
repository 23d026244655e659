"""service.instance.id is stable per host: the same on every start (Loki indexes it, Prometheus
makes it `instance`), different between hosts, and the operator's OTEL_RESOURCE_ATTRIBUTES wins."""

from __future__ import annotations

import subprocess
import sys

from otel_fim.export import endpoint
from otel_fim.export.endpoint import build_resource, service_instance_id


def instance_id_in_new_process() -> str:
    code = (
        "from otel_fim.export.endpoint import build_resource as b; "
        "print(b().attributes['service.instance.id'])"
    )
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()


def test_same_id_on_every_start():
    here = build_resource().attributes["service.instance.id"]
    assert instance_id_in_new_process() == here == build_resource().attributes["service.instance.id"]


def test_derived_from_the_host_id(monkeypatch):
    monkeypatch.setattr(endpoint, "host_id", lambda: "a" * 32)
    one = build_resource().attributes
    assert one["service.instance.id"] == service_instance_id("a" * 32)
    monkeypatch.setattr(endpoint, "host_id", lambda: "b" * 32)
    assert build_resource().attributes["service.instance.id"] != one["service.instance.id"]


def test_without_machine_id_the_host_name(monkeypatch):
    monkeypatch.setattr(endpoint, "host_id", lambda: None)
    monkeypatch.setattr(endpoint.socket, "gethostname", lambda: "node-7")
    attrs = build_resource().attributes
    assert "host.id" not in attrs and attrs["service.instance.id"] == service_instance_id("node-7")


def test_the_environment_wins(monkeypatch):
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "service.instance.id=pod-abc,host.name=node-1")
    attrs = build_resource().attributes
    assert (attrs["service.instance.id"], attrs["host.name"]) == ("pod-abc", "node-1")
