"""Process and container context: the kernel's exec/fork/exit records, a pid cache seeded from
/proc, ancestry, container ids from cgroup names, user and group names.

The rule fields that read this context are defined with the other fields in
`otel_fim.rules.field_catalog`. See "Process and container context" in README.md."""
