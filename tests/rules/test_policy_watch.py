"""The policy fingerprint notices what a ConfigMap update does (a `..data` symlink swap), an edit
in place and a new file; nothing else makes it fire."""

from __future__ import annotations

import time

from otel_fim.rules.watch import PolicyWatch
from tests.support.deploy import configmap_volume


def test_configmap_swap_is_a_change(tmp_path):
    volume = configmap_volume(tmp_path, "2026_a", {"site.yaml": "version: 1\n"})
    watch = PolicyWatch([str(volume)])
    assert not watch.changed()
    configmap_volume(tmp_path, "2026_b", {"site.yaml": "version: 1\n"})  # same text, new target
    assert watch.changed()
    assert not watch.changed()  # once per change


def test_edit_and_new_file_are_changes(tmp_path):
    policy = tmp_path / "a.yaml"
    policy.write_text("version: 1\n")
    watch = PolicyWatch([str(tmp_path)])
    time.sleep(0.01)
    policy.write_text("version: 1\nrules: []\n")
    assert watch.changed()
    (tmp_path / "b.yml").write_text("version: 1\n")
    assert watch.changed()
    (tmp_path / "notes.txt").write_text("not a policy")
    assert not watch.changed()


def test_a_vanished_file_is_a_change_not_an_error(tmp_path):
    policy = tmp_path / "a.yaml"
    policy.write_text("version: 1\n")
    watch = PolicyWatch([str(policy)])
    policy.unlink()
    assert watch.changed()
    assert not watch.changed()
