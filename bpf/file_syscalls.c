/* File syscalls seen through syscalls:sys_enter_* / sys_exit_* tracepoints.
 *
 * sys_enter stashes the arguments per thread (after the cheapest filters: policy, open flags);
 * sys_exit, where the return value is known, tail-calls a chain shared by all 36 syscalls:
 *   complete_call  process facts, policy, inode approvers and discarders (before any walk)
 *   lookup_name    a name as passed, looked up in the dentry cache (bpf/name_lookup.h)
 *   walk_path      the dentry walk, WALK_STEPS levels per call, calling itself until done
 *   finish_path    the name as passed, basename/prefix approvers, the destination (another
 *                  walk), the xattr name, and the ring buffer
 * Tail calls keep each program small enough for the verifier: bcc cannot use bpf_loop. */
#include "events.h"
#include "kernel_access.h"
#include "filters.h"
#include "dentry_cache.h"
#include "path_resolver.h"
#include "name_lookup.h"

#define AT_FDCWD -100
#define AT_REMOVEDIR 0x200
#define AT_EMPTY_PATH 0x1000
#define O_WRONLY_CREAT_TRUNC (01 | 0100 | 01000)
#define O_NOFOLLOW 0400000

/* How the exit side finds the file. */
enum locate {
    LOC_NAME = 0, /* (dfd, name) */
    LOC_FD,       /* descriptor `fd` */
    LOC_OPEN,     /* the returned descriptor when it succeeded, else (dfd, name) */
};

struct pending {
    u64 name;      /* const char __user * */
    u64 name2;     /* destination name (rename, link, symlink) */
    u64 xattr;     /* xattr name */
    s64 length;
    s32 dfd;       /* directory fd for `name`, or the fd for LOC_FD */
    s32 dfd2;
    u32 type;
    u32 syscall;
    u32 locate;
    u32 open_flags;
    u32 mode;
    u32 new_uid;
    u32 new_gid;
    s64 retval;    /* filled at exit */
};

BPF_RINGBUF_OUTPUT(events, RINGBUF_PAGES);
BPF_TABLE("lru_hash", u64, struct pending, pending_calls, 16384);
BPF_PERCPU_ARRAY(counters, u64, FIM_TYPE_MAX * FIM_COUNTER_MAX);
BPF_PERCPU_ARRAY(event_scratch, struct fim_event, 1);
BPF_ARRAY(config, struct fim_config, 1);
BPF_PROG_ARRAY(tail_calls, FIM_TAIL_MAX); /* indexes: enum fim_tail_program */

static __always_inline void count(u32 type, u32 counter)
{
    u32 idx = type * FIM_COUNTER_MAX + counter;
    u64 *v = counters.lookup(&idx);
    if (v)
        *v += 1;
}

/* Does the current task see the host's root (not a chroot or a container's)? */
static __always_inline int has_host_root(struct kpath *root)
{
    u32 zero = 0;
    struct fim_config *cfg = config.lookup(&zero);
    if (!cfg || root->dentry != rd_ptr(root->mnt + OFF_VFSMOUNT_MNT_ROOT))
        return 0;
    return rd_u32(mount_of(root->mnt) + OFF_MOUNT_MNT_ID) == cfg->host_root_mnt_id;
}

/* Not tracked: the agent's own calls, and every call before the sensor is armed. */
static __always_inline int untracked(u64 pid_tgid)
{
    u32 zero = 0;
    struct fim_config *cfg = config.lookup(&zero);
    return !cfg || !cfg->armed || cfg->agent_tgid == (u32)(pid_tgid >> 32);
}

/* Types whose success invalidates discarders: they must complete even when no rule wants them. */
static __always_inline int invalidates(u32 type)
{
    return type == FIM_RENAME || type == FIM_LINK || type == FIM_RMDIR;
}

static __always_inline int stash(struct pending *p)
{
    u64 id = bpf_get_current_pid_tgid();
    if (untracked(id))
        return 0;
    struct fim_policy *pol = policy_of(p->type);
    if (pol && ((pol->mode == FIM_POLICY_DROP && !invalidates(p->type)) ||
                (p->type == FIM_OPEN && !open_gate_passes(pol, p->open_flags)))) {
        count(p->type, FIM_C_SEEN);
        count(p->type, FIM_C_APPROVER_DROPPED);
        return 0;
    }
    pending_calls.update(&id, p);
    return 0;
}

static __always_inline int by_name(u32 type, u32 sc, s32 dfd, const void *name)
{
    struct pending p = {};
    p.type = type;
    p.syscall = sc;
    p.locate = LOC_NAME;
    p.dfd = dfd;
    p.name = (u64)name;
    return stash(&p);
}

/* *at() calls: an empty name with AT_EMPTY_PATH (or a NULL name for utimensat) means the dirfd
 * itself is the file. */
static __always_inline void at_empty_path(struct pending *p, int flags)
{
    char first = 0;
    if (p->name)
        bpf_probe_read_user(&first, 1, (void *)p->name);
    if (!p->name || (first == 0 && (flags & AT_EMPTY_PATH)))
        p->locate = LOC_FD;
}

/* ---- open family ---- */

static __always_inline int on_open(u32 sc, s32 dfd, const void *name, u32 flags, u32 mode)
{
    struct pending p = {};
    p.type = FIM_OPEN;
    p.syscall = sc;
    p.locate = LOC_OPEN;
    p.dfd = dfd;
    p.name = (u64)name;
    p.open_flags = flags;
    p.mode = mode;
    return stash(&p);
}

TRACEPOINT_PROBE(syscalls, sys_enter_open)
{
    return on_open(SC_OPEN, AT_FDCWD, args->filename, args->flags, args->mode);
}

TRACEPOINT_PROBE(syscalls, sys_enter_openat)
{
    return on_open(SC_OPENAT, args->dfd, args->filename, args->flags, args->mode);
}

TRACEPOINT_PROBE(syscalls, sys_enter_openat2)
{
    u64 how[2] = {}; /* struct open_how { u64 flags; u64 mode; u64 resolve; } (uapi, stable) */
    bpf_probe_read_user(how, sizeof(how), args->how);
    return on_open(SC_OPENAT2, args->dfd, args->filename, (u32)how[0], (u32)how[1]);
}

TRACEPOINT_PROBE(syscalls, sys_enter_creat)
{
    return on_open(SC_CREAT, AT_FDCWD, args->pathname, O_WRONLY_CREAT_TRUNC, args->mode);
}

/* ---- truncate ---- */

TRACEPOINT_PROBE(syscalls, sys_enter_truncate)
{
    struct pending p = {};
    p.type = FIM_TRUNCATE;
    p.syscall = SC_TRUNCATE;
    p.dfd = AT_FDCWD;
    p.name = (u64)args->path;
    p.length = args->length;
    return stash(&p);
}

TRACEPOINT_PROBE(syscalls, sys_enter_ftruncate)
{
    struct pending p = {};
    p.type = FIM_TRUNCATE;
    p.syscall = SC_FTRUNCATE;
    p.locate = LOC_FD;
    p.dfd = args->fd;
    p.length = args->length;
    return stash(&p);
}

/* ---- unlink / rmdir / mkdir ---- */

TRACEPOINT_PROBE(syscalls, sys_enter_unlink)
{
    return by_name(FIM_UNLINK, SC_UNLINK, AT_FDCWD, args->pathname);
}

TRACEPOINT_PROBE(syscalls, sys_enter_unlinkat)
{
    u32 type = (args->flag & AT_REMOVEDIR) ? FIM_RMDIR : FIM_UNLINK;
    return by_name(type, SC_UNLINKAT, args->dfd, args->pathname);
}

TRACEPOINT_PROBE(syscalls, sys_enter_rmdir)
{
    return by_name(FIM_RMDIR, SC_RMDIR, AT_FDCWD, args->pathname);
}

static __always_inline int on_mkdir(u32 sc, s32 dfd, const void *name, u32 mode)
{
    struct pending p = {};
    p.type = FIM_MKDIR;
    p.syscall = sc;
    p.dfd = dfd;
    p.name = (u64)name;
    p.mode = mode;
    return stash(&p);
}

TRACEPOINT_PROBE(syscalls, sys_enter_mkdir)
{
    return on_mkdir(SC_MKDIR, AT_FDCWD, args->pathname, args->mode);
}

TRACEPOINT_PROBE(syscalls, sys_enter_mkdirat)
{
    return on_mkdir(SC_MKDIRAT, args->dfd, args->pathname, args->mode);
}

/* ---- rename / link / symlink: two names ---- */

static __always_inline int two_names(u32 type, u32 sc, s32 dfd, const void *name, s32 dfd2,
                                     const void *name2, int flags)
{
    struct pending p = {};
    p.type = type;
    p.syscall = sc;
    p.dfd = dfd;
    p.name = (u64)name;
    p.dfd2 = dfd2;
    p.name2 = (u64)name2;
    if (type == FIM_LINK)
        at_empty_path(&p, flags);
    return stash(&p);
}

TRACEPOINT_PROBE(syscalls, sys_enter_rename)
{
    return two_names(FIM_RENAME, SC_RENAME, AT_FDCWD, args->oldname, AT_FDCWD, args->newname, 0);
}

TRACEPOINT_PROBE(syscalls, sys_enter_renameat)
{
    return two_names(FIM_RENAME, SC_RENAMEAT, args->olddfd, args->oldname, args->newdfd,
                     args->newname, 0);
}

TRACEPOINT_PROBE(syscalls, sys_enter_renameat2)
{
    return two_names(FIM_RENAME, SC_RENAMEAT2, args->olddfd, args->oldname, args->newdfd,
                     args->newname, 0);
}

TRACEPOINT_PROBE(syscalls, sys_enter_link)
{
    return two_names(FIM_LINK, SC_LINK, AT_FDCWD, args->oldname, AT_FDCWD, args->newname, 0);
}

TRACEPOINT_PROBE(syscalls, sys_enter_linkat)
{
    return two_names(FIM_LINK, SC_LINKAT, args->olddfd, args->oldname, args->newdfd,
                     args->newname, args->flags);
}

/* symlink: the file is the new link; the target is kept as written (FIM_F_RAW). */
TRACEPOINT_PROBE(syscalls, sys_enter_symlink)
{
    return two_names(FIM_SYMLINK, SC_SYMLINK, AT_FDCWD, args->newname, AT_FDCWD, args->oldname, 0);
}

TRACEPOINT_PROBE(syscalls, sys_enter_symlinkat)
{
    return two_names(FIM_SYMLINK, SC_SYMLINKAT, args->newdfd, args->newname, AT_FDCWD,
                     args->oldname, 0);
}

/* ---- chmod ---- */

static __always_inline int on_chmod(u32 sc, u32 locate, s32 dfd, const void *name, u32 mode,
                                    int flags)
{
    struct pending p = {};
    p.type = FIM_CHMOD;
    p.syscall = sc;
    p.locate = locate;
    p.dfd = dfd;
    p.name = (u64)name;
    p.mode = mode;
    if (locate == LOC_NAME)
        at_empty_path(&p, flags);
    return stash(&p);
}

TRACEPOINT_PROBE(syscalls, sys_enter_chmod)
{
    return on_chmod(SC_CHMOD, LOC_NAME, AT_FDCWD, args->filename, args->mode, 0);
}

TRACEPOINT_PROBE(syscalls, sys_enter_fchmod)
{
    return on_chmod(SC_FCHMOD, LOC_FD, args->fd, 0, args->mode, 0);
}

TRACEPOINT_PROBE(syscalls, sys_enter_fchmodat)
{
    return on_chmod(SC_FCHMODAT, LOC_NAME, args->dfd, args->filename, args->mode, 0);
}

TRACEPOINT_PROBE(syscalls, sys_enter_fchmodat2)
{
    return on_chmod(SC_FCHMODAT2, LOC_NAME, args->dfd, args->filename, args->mode, args->flags);
}

/* ---- chown ---- */

static __always_inline int on_chown(u32 sc, u32 locate, s32 dfd, const void *name, u32 uid,
                                    u32 gid, int flags)
{
    struct pending p = {};
    p.type = FIM_CHOWN;
    p.syscall = sc;
    p.locate = locate;
    p.dfd = dfd;
    p.name = (u64)name;
    p.new_uid = uid;
    p.new_gid = gid;
    if (locate == LOC_NAME)
        at_empty_path(&p, flags);
    return stash(&p);
}

TRACEPOINT_PROBE(syscalls, sys_enter_chown)
{
    return on_chown(SC_CHOWN, LOC_NAME, AT_FDCWD, args->filename, args->user, args->group, 0);
}

TRACEPOINT_PROBE(syscalls, sys_enter_lchown)
{
    return on_chown(SC_LCHOWN, LOC_NAME, AT_FDCWD, args->filename, args->user, args->group, 0);
}

TRACEPOINT_PROBE(syscalls, sys_enter_fchown)
{
    return on_chown(SC_FCHOWN, LOC_FD, args->fd, 0, args->user, args->group, 0);
}

TRACEPOINT_PROBE(syscalls, sys_enter_fchownat)
{
    return on_chown(SC_FCHOWNAT, LOC_NAME, args->dfd, args->filename, args->user, args->group,
                    args->flag);
}

/* ---- extended attributes ---- */

static __always_inline int on_xattr(u32 type, u32 sc, u32 locate, s32 fd, const void *name,
                                    const void *xattr)
{
    struct pending p = {};
    p.type = type;
    p.syscall = sc;
    p.locate = locate;
    p.dfd = locate == LOC_FD ? fd : AT_FDCWD;
    p.name = (u64)name;
    p.xattr = (u64)xattr;
    return stash(&p);
}

TRACEPOINT_PROBE(syscalls, sys_enter_setxattr)
{
    return on_xattr(FIM_SETXATTR, SC_SETXATTR, LOC_NAME, 0, args->pathname, args->name);
}

TRACEPOINT_PROBE(syscalls, sys_enter_lsetxattr)
{
    return on_xattr(FIM_SETXATTR, SC_LSETXATTR, LOC_NAME, 0, args->pathname, args->name);
}

TRACEPOINT_PROBE(syscalls, sys_enter_fsetxattr)
{
    return on_xattr(FIM_SETXATTR, SC_FSETXATTR, LOC_FD, args->fd, 0, args->name);
}

TRACEPOINT_PROBE(syscalls, sys_enter_removexattr)
{
    return on_xattr(FIM_REMOVEXATTR, SC_REMOVEXATTR, LOC_NAME, 0, args->pathname, args->name);
}

TRACEPOINT_PROBE(syscalls, sys_enter_lremovexattr)
{
    return on_xattr(FIM_REMOVEXATTR, SC_LREMOVEXATTR, LOC_NAME, 0, args->pathname, args->name);
}

TRACEPOINT_PROBE(syscalls, sys_enter_fremovexattr)
{
    return on_xattr(FIM_REMOVEXATTR, SC_FREMOVEXATTR, LOC_FD, args->fd, 0, args->name);
}

/* ---- timestamps ---- */

TRACEPOINT_PROBE(syscalls, sys_enter_utime)
{
    return by_name(FIM_UTIMES, SC_UTIME, AT_FDCWD, args->filename);
}

TRACEPOINT_PROBE(syscalls, sys_enter_utimes)
{
    return by_name(FIM_UTIMES, SC_UTIMES, AT_FDCWD, args->filename);
}

TRACEPOINT_PROBE(syscalls, sys_enter_futimesat)
{
    return by_name(FIM_UTIMES, SC_FUTIMESAT, args->dfd, args->filename);
}

TRACEPOINT_PROBE(syscalls, sys_enter_utimensat)
{
    struct pending p = {};
    p.type = FIM_UTIMES;
    p.syscall = SC_UTIMENSAT;
    p.dfd = args->dfd;
    p.name = (u64)args->filename;
    at_empty_path(&p, args->flags);
    return stash(&p);
}

/* ---- exit side ---- */

static __always_inline int on_exit(void *ctx, long ret)
{
    u64 id = bpf_get_current_pid_tgid();
    struct pending *p = pending_calls.lookup(&id);
    if (!p)
        return 0;
    p->retval = ret;
    tail_calls.call(ctx, FIM_TAIL_COMPLETE_CALL);
    /* Tail call failed (not installed): nothing can complete the call; do not leak the entry. */
    pending_calls.delete(&id);
    return 0;
}

/* Inode facts for a dentry. */
static __always_inline void fill_inode(struct fim_file *f, struct kpath *p)
{
    u64 inode = rd_ptr(p->dentry + OFF_DENTRY_D_INODE);
    f->mnt_id = rd_u32(mount_of(p->mnt) + OFF_MOUNT_MNT_ID);
    if (!inode)
        return; /* negative dentry */
    f->ino = rd_ptr(inode + OFF_INODE_I_INO);
    f->mode = rd_u16(inode + OFF_INODE_I_MODE);
    f->uid = rd_u32(inode + OFF_INODE_I_UID);
    f->gid = rd_u32(inode + OFF_INODE_I_GID);
    f->dev = rd_u32(rd_ptr(inode + OFF_INODE_I_SB) + OFF_SUPER_BLOCK_S_DEV);
    f->nlink = rd_u32(inode + OFF_INODE_I_NLINK);
    f->generation = rd_u32(inode + OFF_INODE_I_GENERATION);
    u64 parent_inode = rd_ptr(rd_ptr(p->dentry + OFF_DENTRY_D_PARENT) + OFF_DENTRY_D_INODE);
    f->parent_ino = parent_inode ? rd_ptr(parent_inode + OFF_INODE_I_INO) : 0;
    f->flags |= FIM_F_HAS_INODE;
}

/* The directory a relative name starts from: the cwd, or the dirfd's file. */
static __always_inline int base_dir(u64 task, u64 fs, s32 dfd, struct kpath *out)
{
    if (dfd == AT_FDCWD) {
        rd_path(fs + OFF_FS_STRUCT_PWD, out);
        return 0;
    }
    u64 file = fd_file(task, dfd);
    if (!file)
        return -1;
    rd_path(file + OFF_FILE_F_PATH, out);
    return 0;
}

/* A path being resolved across tail calls (per CPU: a chain runs on one CPU, start to end). */
enum resolve_mode {
    RES_EXACT = 0, /* from the file's own dentry */
    RES_JOINED,    /* a directory's dentry + the (rest of the) name as passed */
    RES_ABSOLUTE,  /* the absolute name as passed */
    RES_LOOKUP,    /* the name is being looked up in the dentry cache first */
};

struct resolve_job {
    struct walk_state w;
    struct name_lookup lk;
    u64 name;   /* user pointer, for the joined modes */
    u32 mode;   /* enum resolve_mode */
    u32 follows; /* the call acts on a symlink's target when the name's last component is one */
    u32 stage;  /* 0: the file, 1: the destination */
    u32 off;    /* where in ev->data this path goes */
    u32 hops;   /* tail calls so far */
    u32 mask;   /* the event's type bit when its policy denies unless approved, else 0 */
    u32 approved;
    u32 no_discard; /* rename/link: the destination may be watched even when the source is not */
    u32 _pad;
};

BPF_PERCPU_ARRAY(resolve_jobs, struct resolve_job, 1);

#define WALK_STEPS 8

#define DISCARDED 1

/* Inode approvers, then discarders, for a file known by its dentry: before the walk it would cost. */
static __always_inline int filter_by_inode(struct resolve_job *job, struct fim_file *f, struct kpath *p)
{
    if (!job->mask || job->approved || !(f->flags & FIM_F_HAS_INODE))
        return 0;
    struct fim_inode_key file = {.ino = f->ino, .dev = f->dev};
    u64 parent = rd_ptr(p->dentry + OFF_DENTRY_D_PARENT);
    if (file_approved(&file, job->mask) || dir_approved(parent, job->mask)) {
        job->approved = 1;
        return 0;
    }
    if (job->no_discard)
        return 0;
    struct fim_inode_key dir = {.ino = f->parent_ino, .dev = f->dev};
    return discarded(&file, f->generation, &dir, f->mnt_id, job->mask) ? DISCARDED : 0;
}

/* The file's own dentry is known: inode facts and filters, then the walk from it. */
static __always_inline int begin_exact(struct resolve_job *job, struct fim_file *f, struct kpath *from,
                                       struct kpath *root)
{
    fill_inode(f, from);
    job->mode = RES_EXACT;
    if (filter_by_inode(job, f, from) == DISCARDED)
        return DISCARDED;
    walk_begin(&job->w, from, root);
    job->w.check_mask = job->approved ? 0 : job->mask;
    return 0;
}

/* Set up the resolution of one file (stage 0) or destination (stage 1). */
static __always_inline int begin_resolve(struct resolve_job *job, struct fim_file *f, u32 stage,
                                         u32 locate, s32 dfd, u64 name, u32 off)
{
    u64 task = bpf_get_current_task();
    u64 fs = rd_ptr(task + OFF_TASK_FS);
    struct kpath root = {}, from = {};
    rd_path(fs + OFF_FS_STRUCT_ROOT, &root);
    __builtin_memset(f, 0, sizeof(*f));
    job->stage = stage;
    job->off = off;
    job->name = name;
    job->hops = 0;
    job->lk.final = LK_FINAL_UNKNOWN;
    if (has_host_root(&root))
        f->flags |= FIM_F_HOST_ROOT;
    u64 file = locate == LOC_FD ? fd_file(task, dfd) : 0;
    if (file) {
        rd_path(file + OFF_FILE_F_PATH, &from);
        return begin_exact(job, f, &from, &root);
    }
    char first = 0;
    bpf_probe_read_user(&first, 1, (void *)name);
    if (first == '/' && FIM_NAME_LOOKUP) {
        from = root;
    } else if (first == '/' || base_dir(task, fs, dfd, &from) < 0) {
        /* Absolute -- or a bad dirfd (the call failed with EBADF): the name as passed. */
        job->mode = RES_ABSOLUTE;
        walk_begin(&job->w, &root, &root);
        job->w.done = 1;
        return 0;
    }
    job->mode = RES_JOINED;
    walk_begin(&job->w, &from, &root);
    job->w.check_mask = job->approved ? 0 : job->mask;
#if FIM_NAME_LOOKUP
    /* Look the name up first (walk_state keeps the root for after it). */
    job->mode = RES_LOOKUP;
    job->lk.dir = from.dentry;
    job->lk.vfsmnt = from.mnt;
    job->lk.hops = 0;
    job->lk.absolute = first == '/';
#endif
    return 0;
}

/* The next program after begin_resolve. */
static __always_inline u32 first_step(struct resolve_job *job)
{
    return job->mode == RES_LOOKUP ? FIM_TAIL_LOOKUP_NAME : FIM_TAIL_WALK_PATH;
}

/* A tail call failed (the chain is longer than the kernel allows, or a program is missing): the
 * event cannot be completed; it is counted as lost, never dropped silently. */
static __always_inline void chain_broken(u64 id)
{
    struct pending *p = pending_calls.lookup(&id);
    if (p && p->type < FIM_TYPE_MAX)
        count(p->type, FIM_C_LOST);
    pending_calls.delete(&id);
}

static __always_inline void drop_call(u64 id)
{
    pending_calls.delete(&id);
}

int complete_call(void *ctx)
{
    u64 id = bpf_get_current_pid_tgid();
    struct pending *p = pending_calls.lookup(&id);
    u32 zero = 0;
    struct fim_event *ev = event_scratch.lookup(&zero);
    struct resolve_job *job = resolve_jobs.lookup(&zero);
    if (!p || !ev || !job)
        return 0;
    u32 type = p->type;
    if (type >= FIM_TYPE_MAX) {
        drop_call(id);
        return 0;
    }
    count(type, FIM_C_SEEN);
    if (p->retval == 0 && invalidates(type))
        invalidate_discarders();
    struct fim_policy *pol = policy_of(type);
    if (pol && pol->mode == FIM_POLICY_DROP) {
        count(type, FIM_C_APPROVER_DROPPED);
        drop_call(id);
        return 0;
    }
    job->mask = (pol && pol->mode == FIM_POLICY_DENY) ? 1u << type : 0;
    job->approved = 0;
    job->no_discard = p->name2 != 0;
    job->follows = ((1ULL << (p->syscall & 63)) & FIM_FOLLOWS_LAST) ||
                   (type == FIM_OPEN && !(p->open_flags & O_NOFOLLOW));

    u64 task = bpf_get_current_task();
    ev->ts_boot_ns = bpf_ktime_get_boot_ns();
    ev->retval = p->retval;
    ev->cgroup_id = bpf_get_current_cgroup_id();
    ev->length = p->length;
    ev->revision = current_revision();
    ev->type = type;
    ev->syscall = p->syscall;
    ev->pid = id >> 32;
    ev->tid = (u32)id;
    ev->ppid = task_ppid(task);
    u64 ugid = bpf_get_current_uid_gid();
    ev->uid = (u32)ugid;
    ev->gid = ugid >> 32;
    ev->euid = task_euid(task);
    ev->open_flags = p->open_flags;
    ev->mode = p->mode;
    ev->new_uid = p->new_uid;
    ev->new_gid = p->new_gid;
    ev->xattr_len = 0;
    bpf_get_current_comm(ev->comm, sizeof(ev->comm));
    __builtin_memset(&ev->dest, 0, sizeof(ev->dest));

    u32 locate = p->locate;
    s32 dfd = p->dfd;
    if (locate == LOC_OPEN) {
        locate = LOC_NAME;
        if (p->retval >= 0) { /* a successful open: the new descriptor's own dentry */
            locate = LOC_FD;
            dfd = (s32)p->retval;
        }
    }
    if (begin_resolve(job, &ev->file, 0, locate, dfd, p->name, 0) == DISCARDED) {
        count(type, FIM_C_DISCARDER_DROPPED);
        drop_call(id);
        return 0;
    }
    tail_calls.call(ctx, first_step(job));
    chain_broken(id);
    return 0;
}

int walk_path(void *ctx)
{
    u32 zero = 0;
    struct resolve_job *job = resolve_jobs.lookup(&zero);
    struct path_scratch *s = path_scratch.lookup(&zero);
    if (!job || !s)
        return 0;
#pragma unroll
    for (int i = 0; i < WALK_STEPS; i++)
        walk_step(&job->w, s);
    job->hops++;
    if (!job->w.done && job->hops * WALK_STEPS < FIM_MAX_DEPTH)
        tail_calls.call(ctx, FIM_TAIL_WALK_PATH);
    tail_calls.call(ctx, FIM_TAIL_FINISH_PATH);
    chain_broken(bpf_get_current_pid_tgid());
    return 0;
}

#if FIM_NAME_LOOKUP
/* The lookup is over: walk from what it found. */
static __always_inline int lookup_done(struct resolve_job *job, struct fim_file *f)
{
    struct name_lookup *lk = &job->lk;
    struct kpath root = {.mnt = job->w.root_mnt, .dentry = job->w.root_dentry};
    if (!lk->parsed && lk->absolute) { /* "/", or an unreadable name: as passed */
        job->mode = RES_ABSOLUTE;
        walk_begin(&job->w, &root, &root);
        job->w.done = 1;
        return 0;
    }
    if (lk->state == LK_FINAL) {
        u32 flags = rd_u32(lk->hit + OFF_DENTRY_D_FLAGS);
        int symlink = (flags & DCACHE_ENTRY_TYPE) == DCACHE_SYMLINK_TYPE;
        if (!(flags & (DCACHE_MOUNTED | DCACHE_NEED_AUTOMOUNT | DCACHE_MANAGE_TRANSIT)) &&
            !(symlink && job->follows)) {
            struct kpath from = {.mnt = lk->vfsmnt, .dentry = lk->hit};
            return begin_exact(job, f, &from, &root);
        }
        lk->final = LK_FINAL_UNKNOWN; /* what the call acted on is elsewhere */
    }
    if (lk->idx + lk->whole < lk->count)
        lk_count(LKC_PARTIAL);
    job->mode = RES_JOINED;
    if (lk->parsed)
        job->name += lk_rest(lk);
    struct kpath from = {.mnt = lk->vfsmnt, .dentry = lk->dir};
    walk_begin(&job->w, &from, &root);
    job->w.check_mask = job->approved ? 0 : job->mask;
    return 0;
}
#endif

int lookup_name(void *ctx)
{
#if FIM_NAME_LOOKUP
    u64 id = bpf_get_current_pid_tgid();
    u32 zero = 0;
    struct fim_event *ev = event_scratch.lookup(&zero);
    struct resolve_job *job = resolve_jobs.lookup(&zero);
    struct lookup_name_buf *b = lookup_names.lookup(&zero);
    if (!ev || !job || !b)
        return 0;
    if (job->lk.hops == 0)
        lk_parse(&job->lk, b, job->name);
    lk_run(&job->lk, b);
    job->lk.hops++;
    if (job->lk.state < LK_STOP && job->lk.hops < LK_HOPS)
        tail_calls.call(ctx, FIM_TAIL_LOOKUP_NAME);
    struct fim_file *f = job->stage == 0 ? &ev->file : &ev->dest;
    if (lookup_done(job, f) == DISCARDED) {
        struct pending *p = pending_calls.lookup(&id);
        if (p && p->type < FIM_TYPE_MAX)
            count(p->type, FIM_C_DISCARDER_DROPPED);
        drop_call(id);
        return 0;
    }
    tail_calls.call(ctx, FIM_TAIL_WALK_PATH);
    chain_broken(id);
#endif
    return 0;
}

static __always_inline void emit(struct fim_event *ev, u32 type, u32 off)
{
    u64 size = offsetof(struct fim_event, data) + off;
    if (size > sizeof(*ev))
        size = sizeof(*ev);
    /* Keep the clamp in the register the verifier checks: clang may pass the unclamped copy. */
    asm volatile("" : "+r"(size));
    if (events.ringbuf_output(ev, size, 0) == 0)
        count(type, FIM_C_SENT);
    else
        count(type, FIM_C_LOST);
}

/* Can the path's string be trusted to say where the file is? From a dentry, yes. A name as passed
 * only when what is left of it after the lookup is one plain component of a walked directory, and
 * if the call follows a symlink there, the lookup saw the name absent: `..`, a symlinked directory
 * or a symlink target could otherwise lead anywhere, so such events are not dropped here (user
 * space resolves and judges them). */
static __always_inline int provably_unwatched(struct path_scratch *s, struct resolve_job *job,
                                              struct resolved *r, u32 base)
{
    if (r->flags & FIM_F_TRUNCATED)
        return 0; /* the head of the path is missing */
    if (job->mode == RES_EXACT)
        return 1;
    if (job->mode != RES_JOINED)
        return 0;
    /* one component: the last '/' is the one joining it to the walked directory ... */
    if (base != BASE_END + 1 || r->end <= base)
        return 0;
    /* ... and it is not "." or ".." */
    u32 len = r->end - base;
    if (s->buf[BASE_END + 1] == '.' && (len == 1 || (len == 2 && s->buf[BASE_END + 2] == '.')))
        return 0;
    /* ... and, when the call follows a symlink there, the lookup saw that the name is absent */
    return !job->follows || job->lk.final == LK_FINAL_ABSENT;
}

int finish_path(void *ctx)
{
    u64 id = bpf_get_current_pid_tgid();
    u32 zero = 0;
    struct pending *p = pending_calls.lookup(&id);
    struct fim_event *ev = event_scratch.lookup(&zero);
    struct resolve_job *job = resolve_jobs.lookup(&zero);
    struct path_scratch *s = path_scratch.lookup(&zero);
    if (!p || !ev || !job || !s)
        return 0;
    if (!job->w.done)
        job->w.flags |= FIM_F_TRUNCATED; /* deeper than FIM_MAX_DEPTH: the tail is what we have */

    struct resolved r = {};
    if (job->mode == RES_EXACT)
        finish_exact(s, &job->w, &r);
    else
        finish_joined(s, &job->w, (const char *)job->name, job->mode == RES_ABSOLUTE, &r);
    if (job->mask && !job->approved) {
        u32 base = basename_start(s, r.start, r.end);
        job->approved = job->w.approved || !provably_unwatched(s, job, &r, base) ||
                        path_approved(s, r.start, r.end, base, job->mask);
    }
    u64 at = job->off;
    BOUND(at, 4095);
    u32 len = copy_resolved(&ev->data[at], s, &r);
    struct fim_file *f = job->stage == 0 ? &ev->file : &ev->dest;
    f->flags |= r.flags;
    f->path_len = len;
    u32 off = job->off + len;

    if (job->stage == 0 && p->name2) {
        if (p->type != FIM_SYMLINK) {
            job->follows = 0;
            begin_resolve(job, &ev->dest, 1, LOC_NAME, p->dfd2, p->name2, off);
            tail_calls.call(ctx, first_step(job));
            chain_broken(id);
            return 0;
        }
        /* symlink: the target is kept as written. */
        at = off;
        BOUND(at, 4095);
        long n = bpf_probe_read_user_str(&ev->data[at], FIM_PATH_MAX, (void *)p->name2);
        u32 tlen = n > 0 ? (u32)n - 1 : 0;
        ev->dest.flags = FIM_F_RAW | (n == FIM_PATH_MAX ? FIM_F_TRUNCATED : 0);
        ev->dest.path_len = tlen;
        off += tlen;
    }
    if (p->xattr) {
        at = off;
        BOUND(at, 8191);
        long n = bpf_probe_read_user_str(&ev->data[at], FIM_XATTR_MAX, (void *)p->xattr);
        ev->xattr_len = n > 0 ? (u32)n - 1 : 0;
        off += ev->xattr_len;
    }
    u32 type = p->type;
    drop_call(id);
    if (type >= FIM_TYPE_MAX)
        return 0;
    if (job->mask && !job->approved) {
        count(type, FIM_C_APPROVER_DROPPED);
        return 0;
    }
    emit(ev, type, off);
    return 0;
}

/* ---- the exit programs: all the same, the pending record knows the rest ---- */
#define EXIT_PROBE(sc)                        \
    TRACEPOINT_PROBE(syscalls, sys_exit_##sc) \
    {                                         \
        return on_exit(args, args->ret);      \
    }

EXIT_PROBE(open)
EXIT_PROBE(openat)
EXIT_PROBE(openat2)
EXIT_PROBE(creat)
EXIT_PROBE(truncate)
EXIT_PROBE(ftruncate)
EXIT_PROBE(unlink)
EXIT_PROBE(unlinkat)
EXIT_PROBE(rename)
EXIT_PROBE(renameat)
EXIT_PROBE(renameat2)
EXIT_PROBE(mkdir)
EXIT_PROBE(mkdirat)
EXIT_PROBE(rmdir)
EXIT_PROBE(link)
EXIT_PROBE(linkat)
EXIT_PROBE(symlink)
EXIT_PROBE(symlinkat)
EXIT_PROBE(chmod)
EXIT_PROBE(fchmod)
EXIT_PROBE(fchmodat)
EXIT_PROBE(fchmodat2)
EXIT_PROBE(chown)
EXIT_PROBE(fchown)
EXIT_PROBE(lchown)
EXIT_PROBE(fchownat)
EXIT_PROBE(setxattr)
EXIT_PROBE(lsetxattr)
EXIT_PROBE(fsetxattr)
EXIT_PROBE(removexattr)
EXIT_PROBE(lremovexattr)
EXIT_PROBE(fremovexattr)
EXIT_PROBE(utime)
EXIT_PROBE(utimes)
EXIT_PROBE(utimensat)
EXIT_PROBE(futimesat)
