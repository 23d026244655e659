/* The one place the kernel <-> user-space contract is defined: every struct, enum (map indexes
 * included) and constant user space reads or writes. Python mirrors all of it in
 * otel_fim/kernel/layout.py; tests/kernel/test_layout.py compiles this header with gcc and compares
 * every offset, size and value, and the sensor compares bcc's map key/value sizes at load. */
#ifndef OTEL_FIM_EVENTS_H
#define OTEL_FIM_EVENTS_H

#define FIM_PATH_MAX 4096     /* bytes kept of one path (the tail, when longer: flagged) */
#define FIM_XATTR_MAX 256     /* XATTR_NAME_MAX + 1 */
#define FIM_DATA_MAX (2 * FIM_PATH_MAX + FIM_XATTR_MAX)
#define FIM_MAX_DEPTH 96      /* dentry levels walked, mount crossings included */

enum fim_event_type {
    FIM_OPEN = 0,
    FIM_UNLINK,
    FIM_RENAME,
    FIM_MKDIR,
    FIM_RMDIR,
    FIM_LINK,
    FIM_SYMLINK,
    FIM_CHMOD,
    FIM_CHOWN,
    FIM_UTIMES,
    FIM_SETXATTR,
    FIM_REMOVEXATTR,
    FIM_TRUNCATE,
    FIM_TYPE_MAX,
};

/* Our own syscall numbering: stable across architectures, names in layout.py. */
enum fim_syscall {
    SC_OPEN = 0, SC_OPENAT, SC_OPENAT2, SC_CREAT, SC_TRUNCATE, SC_FTRUNCATE,
    SC_UNLINK, SC_UNLINKAT, SC_RENAME, SC_RENAMEAT, SC_RENAMEAT2,
    SC_MKDIR, SC_MKDIRAT, SC_RMDIR, SC_LINK, SC_LINKAT, SC_SYMLINK, SC_SYMLINKAT,
    SC_CHMOD, SC_FCHMOD, SC_FCHMODAT, SC_FCHMODAT2,
    SC_CHOWN, SC_FCHOWN, SC_LCHOWN, SC_FCHOWNAT,
    SC_SETXATTR, SC_LSETXATTR, SC_FSETXATTR, SC_REMOVEXATTR, SC_LREMOVEXATTR, SC_FREMOVEXATTR,
    SC_UTIME, SC_UTIMES, SC_UTIMENSAT, SC_FUTIMESAT,
    SC_MAX,
};

/* Syscalls that act on a symlink's target when the name's last component is one (bit = enum
 * fim_syscall). */
#define FIM_FOLLOWS_LAST                                                                         \
    ((1ULL << SC_TRUNCATE) | (1ULL << SC_CHMOD) | (1ULL << SC_FCHMODAT) | (1ULL << SC_FCHMODAT2) | \
     (1ULL << SC_CHOWN) | (1ULL << SC_FCHOWNAT) | (1ULL << SC_SETXATTR) | (1ULL << SC_REMOVEXATTR) | \
     (1ULL << SC_UTIME) | (1ULL << SC_UTIMES) | (1ULL << SC_UTIMENSAT) | (1ULL << SC_FUTIMESAT))

/* Per event type counters (per-CPU array index = type * FIM_COUNTER_MAX + counter). */
enum fim_counter {
    FIM_C_SEEN = 0,            /* completed syscalls of the type */
    FIM_C_APPROVER_DROPPED,    /* dropped in kernel: no approver matched */
    FIM_C_DISCARDER_DROPPED,   /* dropped in kernel: a discarder matched */
    FIM_C_SENT,                /* written to the ring buffer */
    FIM_C_LOST,                /* ring buffer full: the event is gone (never silent: counted) */
    FIM_COUNTER_MAX,
};

/* `tail_calls` program array indexes; each enumerator names its program (FIM_TAIL_<PROGRAM>). */
enum fim_tail_program {
    FIM_TAIL_COMPLETE_CALL = 0, /* builds the event once the syscall returned */
    FIM_TAIL_WALK_PATH,         /* walks dentries up to the root, WALK_STEPS levels per call */
    FIM_TAIL_FINISH_PATH,       /* filters and sends the event */
    FIM_TAIL_LOOKUP_NAME,       /* resolves a name the process passed (bpf/name_lookup.h) */
    FIM_TAIL_MAX,
};

/* `lookup_counters` indexes (per CPU): how the name lookup found components, and lookups that
 * stopped short (bpf/name_lookup.h). */
enum fim_lookup_counter {
    LKC_CACHE_HIT = 0, /* a component found through the dentry_cache map */
    LKC_SCAN_HIT,      /* ... by scanning its directory's children */
    LKC_PARTIAL,       /* a lookup ended before the last component's directory (the rest: user space) */
    LKC_MAX,
};

/* fim_file.flags */
#define FIM_F_TRUNCATED   0x01 /* path longer than FIM_PATH_MAX or deeper than FIM_MAX_DEPTH: tail kept */
#define FIM_F_FROM_DENTRY 0x02 /* the whole path comes from the file's own dentry (exact) */
#define FIM_F_JOINED      0x04 /* base directory from a dentry + the name as the process passed it */
#define FIM_F_HAS_INODE   0x08 /* ino/dev/mode/uid/gid are valid */
#define FIM_F_RAW         0x10 /* a string kept as passed (symlink target) */
#define FIM_F_UNREACHABLE 0x20 /* the walk left the process's root (e.g. fd opened before chroot) */
#define FIM_F_HOST_ROOT   0x40 /* the process's root is the host's: user space may resolve its names */

struct fim_file {
    __u64 ino;
    __u32 dev;      /* kernel dev_t (MAJOR << 20 | MINOR) */
    __u32 mnt_id;
    __u32 mode;
    __u32 uid;
    __u32 gid;
    __u16 flags;
    __u16 path_len; /* bytes in fim_event.data, no NUL */
    __u64 parent_ino; /* the parent directory's inode (with FIM_F_HAS_INODE), for directory discarders */
    __u32 nlink;      /* hard links: an inode with several names never becomes a discarder */
    __u32 generation; /* i_generation: tells a reused inode number from the file it was */
};

struct fim_event {
    __u64 ts_boot_ns;  /* CLOCK_BOOTTIME */
    __s64 retval;
    __u64 cgroup_id;
    __s64 length;      /* truncate length */
    __u64 revision;    /* discarder revision when the call completed: discarders learned from this
                        * event are pushed with it, so a later rename makes them stale at once */
    __u32 type;        /* enum fim_event_type */
    __u32 syscall;     /* enum fim_syscall */
    __u32 pid;         /* tgid */
    __u32 tid;
    __u32 ppid;
    __u32 uid;
    __u32 gid;
    __u32 euid;
    __u32 open_flags;
    __u32 mode;        /* create mode (open, mkdir) or new mode (chmod) */
    __u32 new_uid;     /* chown */
    __u32 new_gid;
    __u16 xattr_len;
    __u16 _pad[3];
    char comm[16];
    struct fim_file file;
    struct fim_file dest; /* rename/link destination; symlink target (FIM_F_RAW) */
    char data[FIM_DATA_MAX]; /* file path, then dest path, then xattr name */
};

/* ---- the kernel filter (bpf/filters.h); user space fills these maps from the rule set ---- */

enum fim_policy_mode {
    FIM_POLICY_ACCEPT = 0, /* send every event of the type (no rule filters it, or filtering is off) */
    FIM_POLICY_DENY,       /* drop unless an approver passes it and no discarder drops it */
    FIM_POLICY_DROP,       /* no rule needs the type: drop first thing */
};

struct fim_policy {
    __u32 mode;
    __u32 flags_any;     /* open-flag gate, when `gate`: pass if flags & flags_any */
    __u8 gate;
    __u8 allow_rdonly;   /* ... or if the open is read-only */
    __u8 _pad[6];
};

#define FIM_BASENAME_KEY 32 /* bytes of a basename used as key (longer ones: a prefix, re-checked above) */
struct fim_basename_key {
    char name[FIM_BASENAME_KEY];
};

#define FIM_PREFIX_MAX 256 /* bytes of a path the directory-prefix trie looks at */
struct fim_prefix_key {
    __u32 prefixlen; /* in bits, as LPM tries want */
    char data[FIM_PREFIX_MAX];
};

struct fim_inode_key {
    __u64 ino;
    __u32 dev; /* kernel dev_t */
    __u32 _pad;
};

/* Approver values and discarder entries hold masks of event types (bit = enum fim_event_type). */
struct fim_inode_approver {
    __u32 file_mask; /* the watched file itself (any of its hard links) */
    __u32 dir_mask;  /* a watched directory: anything below it (any bind mount of it) */
};

struct fim_discarder {
    __u32 file_mask; /* events of these types on this inode cannot match */
    __u32 dir_mask;  /* ... nor on anything directly in this directory */
    __u64 revision;  /* valid while equal to the global revision */
    __u32 mnt_id;    /* ... and only through this mount: a bind mount elsewhere may be watched */
    __u32 generation; /* file entries: the inode's i_generation (an unlinked inode's number is reused) */
};

/* `filter_state` array indexes */
#define FIM_STATE_REVISION 0 /* bumped by rename/link/rmdir and by rule reloads */

/* Settings user space writes into the `config` array map (index 0). */
struct fim_config {
    __u32 agent_tgid;       /* the agent's own activity is never reported */
    __u32 host_root_mnt_id; /* the mount id of the agent's (the host's) root */
    __u32 armed;            /* 1 once every tail-call program is in place: calls are only tracked
                             * from then on (bcc attaches the tracepoints before that) */
    __u32 _pad;
};

/* ---- Process events (bpf/process_events.c), their own ring buffer `proc_events` ---- */
#define FIM_PROC_PATH_MAX 512   /* exec filename as passed to execve (the tail is dropped) */
#define FIM_PROC_ARGS_MAX 4096  /* argv bytes kept (NUL separated) */
#define FIM_CG_LEVELS 6         /* cgroup path components kept, leaf first */
#define FIM_CG_NAME_MAX 128     /* bytes of one component (the tail is dropped) */

enum fim_proc_event_type {
    FIM_PROC_EXEC = 0,
    FIM_PROC_FORK,
    FIM_PROC_EXIT,
    FIM_PROC_TYPE_MAX,
};

/* `proc_counters` (per CPU): index = type * FIM_PC_MAX + counter. */
enum fim_proc_counter {
    FIM_PC_SENT = 0, /* written to `proc_events` */
    FIM_PC_LOST,     /* `proc_events` full: the record is gone */
    FIM_PC_MAX,
};

/* fim_proc_event.flags */
#define FIM_PF_ARGS_TRUNCATED 0x01 /* argv longer than FIM_PROC_ARGS_MAX */
#define FIM_PF_NO_MM          0x02 /* no user memory to read argv from (kernel thread) */

struct fim_cgroup_path {
    __u32 level;  /* depth of the cgroup (0: the root); levels above FIM_CG_LEVELS are not kept */
    __u32 hierarchy_id;
    char names[FIM_CG_LEVELS][FIM_CG_NAME_MAX]; /* names[0] is the leaf */
};

struct fim_proc_event {
    __u64 ts_boot_ns;     /* CLOCK_BOOTTIME */
    __u64 start_boot_ns;  /* the process's start, CLOCK_BOOTTIME (task->start_boottime) */
    __u64 cgroup_id;      /* v2 cgroup id */
    __u32 type;           /* enum fim_proc_event_type */
    __u32 pid;            /* tgid (fork: the child's) */
    __u32 tid;
    __u32 ppid;           /* tgid of the real parent */
    __u32 uid;
    __u32 gid;
    __u32 euid;
    __u32 egid;
    __u32 exit_code;      /* exit: task->exit_code (status << 8 | signal) */
    __u16 flags;
    __u16 args_len;       /* bytes in args */
    char comm[16];
    char filename[FIM_PROC_PATH_MAX];
    struct fim_cgroup_path cg2; /* the unified (v2) hierarchy */
    struct fim_cgroup_path cg1; /* the deepest v1 hierarchy (v1 and hybrid machines) */
    char args[FIM_PROC_ARGS_MAX]; /* sent up to args_len: records are variable length */
};

#endif
