"""The bundled plugins (installed as the package `otel_fim_plugins`, registered by the entry points
in pyproject.toml): hash, diff, package, kill."""
