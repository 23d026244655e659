"""What a plugin imports (kept at this path for plugin authors): see `otel_fim.plugin.api`."""

from otel_fim.plugin.api import *  # noqa: F403
from otel_fim.plugin.api import __all__  # noqa: F401
