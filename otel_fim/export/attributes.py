"""Every attribute name a detection record carries, in one place.

`record.py` writes them (event -> record) and reads them back (record -> event, for `otel-fim rules
test`); the README's attribute reference lists the same names. OpenTelemetry semantic-convention
names (`file.*`, `process.*`, `container.*`, `security_rule.*`, `user.*`) are used where a
convention exists; the agent's own attributes live under `otel_fim.` (one namespace, like the event
names `otel_fim.file.<type>` and the metrics `otel_fim.*`).
"""

from __future__ import annotations

# -- the file the event is about (semconv `file.*`; FILE is also the prefix of the destination) ----
FILE = "file"
FILE_PATH = "file.path"
FILE_DEVICE = "otel_fim.file.device"
FILE_MOUNT_ID = "otel_fim.file.mount_id"
FILE_ACCESSED_NAMESPACE = "otel_fim.file"  # otel_fim.file.accessed_path: the other name a write went through
PATH_TRUNCATED = "otel_fim.path.truncated"
PATH_ESCAPED = "otel_fim.path.escaped"
SYMLINK_TARGET = "file.symbolic_link.target_path"
DESTINATION = "otel_fim.file.destination"
DESTINATION_PATH = "otel_fim.file.destination.path"
DESTINATION_NAME = "otel_fim.file.destination.name"
DESTINATION_INODE = "otel_fim.file.destination.inode"
DESTINATION_TRUNCATED = "otel_fim.file.destination.truncated"

# -- what was done ----------------------------------------------------------------------------------
EVENT_TYPE = "otel_fim.event.type"
SYSCALL = "otel_fim.syscall"
RETVAL = "otel_fim.retval"
OPEN_FLAGS = "otel_fim.open.flags"
OPEN_FLAGS_TEXT = "otel_fim.open.flags_text"
OPEN_MODE = "otel_fim.open.mode"
CHMOD_MODE = "otel_fim.chmod.mode"
CHOWN_UID = "otel_fim.chown.uid"
CHOWN_GID = "otel_fim.chown.gid"
XATTR_NAME = "otel_fim.xattr.name"
TRUNCATE_LENGTH = "otel_fim.truncate.length"
MKNOD_MODE = "otel_fim.mknod.mode"
MKNOD_FILE_TYPE = "otel_fim.mknod.file_type"  # regular, fifo, socket, char, block
CHATTR_REQUEST = "otel_fim.chattr.request"  # FS_IOC_SETFLAGS or FS_IOC_FSSETXATTR
CHATTR_FLAGS = "otel_fim.chattr.flags"  # requested, FS_*_FL
CHATTR_FLAGS_TEXT = "otel_fim.chattr.flags_text"  # lsattr letters
CHATTR_OLD_FLAGS = "otel_fim.chattr.old_flags"  # the inode's before the call (VFS subset)
CHATTR_OLD_FLAGS_TEXT = "otel_fim.chattr.old_flags_text"

# -- who did it ------------------------------------------------------------------------------------
PROCESS_PID = "process.pid"
THREAD_ID = "thread.id"
PROCESS_PARENT_PID = "process.parent_pid"
PROCESS_EXECUTABLE_NAME = "process.executable.name"  # the executable's basename (else comm)
PROCESS_COMM = "otel_fim.process.comm"  # the kernel's comm: 15 bytes, set by the process itself
PROCESS_USER_ID = "process.user.id"
PROCESS_REAL_USER_ID = "process.real_user.id"
PROCESS_REAL_GROUP_ID = "otel_fim.process.real_group.id"
USER_ID = "user.id"
PROCESS_CGROUP_ID = "otel_fim.process.cgroup_id"
PROCESS_EXECUTABLE_PATH = "process.executable.path"
PROCESS_COMMAND_ARGS = "process.command_args"
PROCESS_COMMAND_LINE = "process.command_line"
PROCESS_ARGS_TRUNCATED = "otel_fim.process.args_truncated"
PROCESS_CREATION_TIME = "process.creation.time"
PROCESS_USER_NAME = "process.user.name"
USER_NAME = "user.name"
PROCESS_REAL_GROUP_NAME = "otel_fim.process.real_group.name"
ANCESTORS_PID = "otel_fim.process.ancestors.pid"
ANCESTORS_NAME = "otel_fim.process.ancestors.name"
ANCESTORS_EXECUTABLE_PATH = "otel_fim.process.ancestors.executable.path"
PARENT_EXECUTABLE_PATH = "otel_fim.process.parent.executable.path"
PARENT_COMMAND_LINE = "otel_fim.process.parent.command_line"
CONTAINER_ID = "container.id"
CONTAINER_RUNTIME = "container.runtime.name"

LOG_RECORD_UID = "log.record.uid"  # a ULID per record: resends after a failed export keep it

# -- why it was reported ---------------------------------------------------------------------------
RULE_NAME = "security_rule.name"
RULE_IDS = "otel_fim.rule.ids"
RULE_SEVERITY = "otel_fim.rule.severity"
RULE_TECHNIQUES = "otel_fim.rule.techniques"  # each matching rule's `mitre` tag, same order as RULE_IDS
RULE_DESCRIPTION = "security_rule.description"
RULESET_NAME = "security_rule.ruleset.name"
RULE_CATEGORY = "security_rule.category"
RULE_REFERENCE = "security_rule.reference"  # the `reference` tag, else the ATT&CK page of `mitre`
RULE_TAGS = "otel_fim.rule.tags"  # otel_fim.rule.tags.<key>

# -- what plugins added ------------------------------------------------------------------------------
PLUGIN_PREFIX = "otel_fim.plugin."  # otel_fim.plugin.<plugin name>.<key>
PLUGINS_NAMESPACE = "otel_fim.plugins"  # otel_fim.plugins.skipped: why enrichment did not run
