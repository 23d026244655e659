from __future__ import annotations

import os
from pathlib import Path

from otel_fim.process.users import UserNames


def test_names_and_reload(tmp_path: Path) -> None:
    passwd, group = tmp_path / "passwd", tmp_path / "group"
    passwd.write_text(
        "root:x:0:0:root:/root:/bin/bash\n# comment\nbroken\nalice:x:1000:1000::/home/a:/bin/sh\n"
    )
    group.write_text("root:x:0:\nstaff:x:50:alice\n")
    names = UserNames(passwd, group, check_interval=0)
    assert names.user(0) == "root" and names.user(1000) == "alice" and names.user(4242) is None
    assert names.group(50) == "staff" and names.group(None) is None

    passwd.write_text(passwd.read_text() + "bob:x:4242:4242::/home/b:/bin/sh\n")
    st = passwd.stat()
    os.utime(passwd, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # a visible change, however fast
    assert names.user(4242) == "bob"


def test_checks_are_rate_limited(tmp_path: Path) -> None:
    passwd, group = tmp_path / "passwd", tmp_path / "group"
    passwd.write_text("a:x:1:1::/:/bin/sh\n")
    group.write_text("")
    names = UserNames(passwd, group, check_interval=3600)
    assert names.user(1) == "a"
    passwd.write_text("b:x:1:1::/:/bin/sh\n")
    assert names.user(1) == "a"  # not re-checked within the interval


def test_missing_files(tmp_path: Path) -> None:
    names = UserNames(tmp_path / "none", tmp_path / "none2", check_interval=0)
    assert names.user(0) is None and names.group(0) is None


def test_host_root() -> None:
    assert UserNames().user(0) == "root"
