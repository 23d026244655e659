"""Process and container context: the kernel's exec/fork/exit records, a pid cache seeded from
/proc, ancestry, container ids from cgroup names, user and group names.

See "Process and container context" in README.md."""

from otel_fim.process import fields as _fields  # noqa: E402, F401 - registers the rule fields
