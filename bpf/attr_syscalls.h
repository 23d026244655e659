/* Calls that change a file's protection without touching its mode bits or content through the
 * other tracepoints: mknod(at) (a regular file can be created with it) and the attribute-flag
 * ioctls (chattr +i / +a / -i). Included by file_syscalls.c after stash(): they share its
 * pending-call machinery and exit chain. */
#ifndef OTEL_FIM_ATTR_SYSCALLS_H
#define OTEL_FIM_ATTR_SYSCALLS_H

static __always_inline int on_mknod(u32 sc, s32 dfd, const void *name, u32 mode)
{
    struct pending p = {};
    p.type = FIM_MKNOD;
    p.syscall = sc;
    p.dfd = dfd;
    p.name = (u64)name;
    p.mode = mode;
    return stash(&p);
}

TRACEPOINT_PROBE(syscalls, sys_enter_mknod)
{
    return on_mknod(SC_MKNOD, AT_FDCWD, args->filename, args->mode);
}

TRACEPOINT_PROBE(syscalls, sys_enter_mknodat)
{
    return on_mknod(SC_MKNODAT, args->dfd, args->filename, args->mode);
}

/* The inode's i_flags (S_APPEND, S_IMMUTABLE, ...) of an open descriptor, before the call. */
static __always_inline int fd_inode_flags(s32 fd, u32 *out)
{
    u64 file = fd_file(bpf_get_current_task(), fd);
    if (!file)
        return 0;
    struct kpath path = {};
    rd_path(file + OFF_FILE_F_PATH, &path);
    u64 inode = rd_ptr(path.dentry + OFF_DENTRY_D_INODE);
    if (!inode)
        return 0;
    *out = rd_u32(inode + OFF_INODE_I_FLAGS);
    return 1;
}

/* Attribute-flag ioctls between their enter and exit: while there is none (nearly always), every
 * other ioctl's exit leaves after reading this counter instead of looking its thread up. */
BPF_ARRAY(chattr_inflight, s64, 1);

/* Every ioctl on the host comes through here: the command is compared first, and any other ioctl
 * leaves after those two comparisons. */
TRACEPOINT_PROBE(syscalls, sys_enter_ioctl)
{
    u32 cmd = (u32)args->cmd;
    if (cmd != FIM_FS_IOC_SETFLAGS && cmd != FIM_FS_IOC_FSSETXATTR)
        return 0;
    struct pending p = {};
    p.type = FIM_CHATTR;
    p.syscall = SC_IOCTL;
    p.locate = LOC_FD;
    p.dfd = (s32)args->fd;
    p.attr_cmd = cmd;
    /* SETFLAGS passes an int; FSSETXATTR a struct fsxattr whose first member is fsx_xflags. */
    if (bpf_probe_read_user(&p.attr_new, sizeof(p.attr_new), (void *)args->arg) == 0)
        p.attr_valid |= FIM_ATTR_NEW_READ;
    if (fd_inode_flags(p.dfd, &p.attr_old))
        p.attr_valid |= FIM_ATTR_OLD_READ;
    stash(&p);
    u64 id = bpf_get_current_pid_tgid();
    u32 zero = 0;
    s64 *inflight = chattr_inflight.lookup(&zero);
    if (inflight && pending_calls.lookup(&id)) /* stashed: its exit must look */
        __sync_fetch_and_add(inflight, 1);
    return 0;
}

static __always_inline int on_exit(void *ctx, long ret);

TRACEPOINT_PROBE(syscalls, sys_exit_ioctl)
{
    u32 zero = 0;
    s64 *inflight = chattr_inflight.lookup(&zero);
    if (!inflight || *inflight <= 0)
        return 0;
    u64 id = bpf_get_current_pid_tgid();
    struct pending *p = pending_calls.lookup(&id);
    if (!p || p->syscall != SC_IOCTL)
        return 0;
    __sync_fetch_and_add(inflight, -1);
    return on_exit(args, args->ret);
}

#endif
