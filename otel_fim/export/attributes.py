"""Every attribute name a detection record carries, in one place.

`record.py` writes them (event -> record) and reads them back (record -> event, for `otel-fim rules
test`); the README's attribute reference lists the same names. OpenTelemetry semantic-convention
names (`file.*`, `process.*`, `container.*`, `security_rule.*`, `user.*`) are used where a
convention exists; the agent's own attributes live under `fim.`.
"""

from __future__ import annotations

# -- the file the event is about (semconv `file.*`; FILE is also the prefix of the destination) ----
FILE = "file"
FILE_PATH = "file.path"
FILE_DEVICE = "fim.file.device"
FILE_MOUNT_ID = "fim.file.mount_id"
FILE_ACCESSED_NAMESPACE = "fim.file"  # fim.file.accessed_path: the other name a write went through
PATH_TRUNCATED = "fim.path.truncated"
PATH_ESCAPED = "fim.path.escaped"
SYMLINK_TARGET = "file.symbolic_link.target_path"
DESTINATION = "fim.file.destination"
DESTINATION_PATH = "fim.file.destination.path"
DESTINATION_NAME = "fim.file.destination.name"
DESTINATION_INODE = "fim.file.destination.inode"
DESTINATION_TRUNCATED = "fim.file.destination.truncated"

# -- what was done ----------------------------------------------------------------------------------
EVENT_TYPE = "fim.event.type"
SYSCALL = "fim.syscall"
RETVAL = "fim.retval"
OPEN_FLAGS = "fim.open.flags"
OPEN_FLAGS_TEXT = "fim.open.flags_text"
OPEN_MODE = "fim.open.mode"
CHMOD_MODE = "fim.chmod.mode"
CHOWN_UID = "fim.chown.uid"
CHOWN_GID = "fim.chown.gid"
XATTR_NAME = "fim.xattr.name"
TRUNCATE_LENGTH = "fim.truncate.length"

# -- who did it ------------------------------------------------------------------------------------
PROCESS_PID = "process.pid"
THREAD_ID = "thread.id"
PROCESS_PARENT_PID = "process.parent_pid"
PROCESS_EXECUTABLE_NAME = "process.executable.name"
PROCESS_USER_ID = "process.user.id"
PROCESS_REAL_USER_ID = "process.real_user.id"
PROCESS_REAL_GROUP_ID = "process.real_group.id"
USER_ID = "user.id"
PROCESS_CGROUP_ID = "fim.process.cgroup_id"
PROCESS_EXECUTABLE_PATH = "process.executable.path"
PROCESS_COMMAND_ARGS = "process.command_args"
PROCESS_COMMAND_LINE = "process.command_line"
PROCESS_ARGS_TRUNCATED = "fim.process.args_truncated"
PROCESS_CREATION_TIME = "process.creation.time"
PROCESS_USER_NAME = "process.user.name"
USER_NAME = "user.name"
PROCESS_REAL_GROUP_NAME = "process.real_group.name"
ANCESTORS_PID = "fim.process.ancestors.pid"
ANCESTORS_NAME = "fim.process.ancestors.name"
ANCESTORS_EXECUTABLE_PATH = "fim.process.ancestors.executable.path"
PARENT_EXECUTABLE_PATH = "fim.process.parent.executable.path"
PARENT_COMMAND_LINE = "fim.process.parent.command_line"
CONTAINER_ID = "container.id"
CONTAINER_RUNTIME = "container.runtime.name"

# -- why it was reported ---------------------------------------------------------------------------
RULE_NAME = "security_rule.name"
RULE_IDS = "fim.rule.ids"
RULE_SEVERITY = "fim.rule.severity"
RULE_DESCRIPTION = "security_rule.description"
RULESET_NAME = "security_rule.ruleset.name"
RULE_CATEGORY = "security_rule.category"
RULE_TAGS = "fim.rule.tags"  # fim.rule.tags.<key>

# -- what plugins added ------------------------------------------------------------------------------
PLUGIN_PREFIX = "fim.plugin."  # fim.plugin.<plugin name>.<key>
PLUGINS_NAMESPACE = "fim.plugins"  # fim.plugins.skipped: why enrichment did not run
