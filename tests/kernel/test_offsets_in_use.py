"""The sensor's struct offsets are BTF's, not the (other-version) headers' bcc compiles against."""

from __future__ import annotations

import ctypes
import os

import pytest

from otel_fim.kernel import headers
from otel_fim.kernel.btf import Btf
from otel_fim.kernel.offsets import MEMBERS, read_offsets
from tests.support.kernel_harness import EventCollector

pytestmark = pytest.mark.kernel

HEADER_PROBE = """
#include <linux/fs.h>
#include <linux/dcache.h>
BPF_ARRAY(out, u64, 2);
TRACEPOINT_PROBE(syscalls, sys_enter_getppid) {
    u32 k0 = 0, k1 = 1;
    u64 f_path = offsetof(struct file, f_path), d_name = offsetof(struct dentry, d_name);
    out.update(&k0, &f_path);
    out.update(&k1, &d_name);
    return 0;
}
"""


def header_offsets() -> tuple[int, int]:
    """offsetof(struct file, f_path) and offsetof(struct dentry, d_name) as the installed headers
    say, compiled by bcc exactly as our programs are."""
    from bcc import BPF

    headers.configure_bcc(headers.prepare())
    bpf = BPF(text=HEADER_PROBE.encode())
    try:
        os.getppid()
        out = bpf[b"out"]
        return out[ctypes.c_int(0)].value, out[ctypes.c_int(1)].value
    finally:
        bpf.cleanup()


def test_sensor_uses_btf_offsets(sensor_events: EventCollector) -> None:
    btf = Btf.load()
    assert sensor_events.sensor.offsets == read_offsets(btf, MEMBERS)
    assert sensor_events.sensor.offsets["OFF_FILE_F_PATH"] == btf.offset_of("file", "f_path")


def test_headers_disagree_with_the_running_kernel_here() -> None:
    """On these machines the 6.1 headers put struct file's f_path elsewhere than the 6.18 kernel:
    reading by header layout would resolve garbage. If headers ever match, this documents it."""
    tree = headers.prepare()
    f_path, d_name = header_offsets()
    btf = Btf.load()
    if tree.matches_running:
        assert f_path == btf.offset_of("file", "f_path")
    else:
        assert f_path != btf.offset_of("file", "f_path"), "headers for another kernel happen to agree"
    assert d_name == btf.offset_of("dentry", "d_name")  # a stable member: the probe itself reads right
