"""The rule field of scan findings (registered on import, like the process fields)."""

from __future__ import annotations

from otel_fim.rules.fields import FieldType, lookup, register_field
from otel_fim.scan.findings import scan_change


def register() -> None:
    if lookup("scan.change") is None:
        register_field(
            "scan.change", FieldType.STR, scan_change,
            doc="a scan finding: created, modified, deleted, mode_changed, owner_changed; None when live",
        )  # fmt: skip


register()
