"""Process and container context: the kernel's exec/fork/exit records, a pid cache seeded from
/proc, ancestry, container ids from cgroup names, user and group names (see README.md#process-and-container-context)."""

from otel_fim.process import fields as _fields  # noqa: E402, F401 - registers the rule fields
