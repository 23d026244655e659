/* Kernel-learned verdicts: "no approver passes this file" remembered after one path walk, so the
 * next event on the same file is dropped after one map lookup instead of another walk.
 *
 * User space learns discarders only from events it sees, and an event the approvers dropped never
 * reaches it: without this, every write-open of an unwatched file walks its whole path again.
 *
 * What the verdict depends on, and what keeps it honest:
 *   the approver maps                 user space bumps the verdict revision on every reload and
 *                                     whenever it rewrites the inode approvers
 *   the file's dentry chain (names)   rename, link, unlink and rmdir bump the revision (any
 *                                     file, anywhere: the simple sound choice)
 *   the mount chain above it          mount, umount, move_mount and pivot_root bump it too
 *   the process root (chroot, ns)     part of the entry (root mount id + root inode)
 *   the mount it was reached through  part of the entry (a bind mount elsewhere may be watched)
 *   the inode itself                  key (ino, dev) + i_generation in the entry
 *   a second name                     only files with one link are cached; link() bumps
 * The revision an entry carries is read before the walk it comes from, so a rename that lands
 * while the walk runs leaves the entry stale at once. Only exact paths (from the file's own
 * dentry) are cached; names as passed never are. */
#ifndef OTEL_FIM_VERDICTS_H
#define OTEL_FIM_VERDICTS_H

BPF_TABLE("lru_hash", struct fim_inode_key, struct fim_verdict, verdicts, 16384);

BPF_PERCPU_ARRAY(verdict_counters, u64, FIM_VC_MAX); /* indexes: enum fim_verdict_counter */

static __always_inline void verdict_count(u32 counter)
{
    u64 *v = verdict_counters.lookup(&counter);
    if (v)
        *v += 1;
}

static __always_inline u64 verdict_revision(void)
{
    u32 kernel = FIM_STATE_VERDICT_REVISION, user = FIM_STATE_VERDICT_RELOADS;
    u64 *a = filter_state.lookup(&kernel);
    u64 *b = filter_state.lookup(&user);
    return (a ? *a : 0) + (b ? *b : 0); /* both only grow: any bump changes the sum */
}

static __always_inline void invalidate_verdicts(void)
{
    u32 idx = FIM_STATE_VERDICT_REVISION;
    u64 *rev = filter_state.lookup(&idx);
    if (rev)
        __sync_fetch_and_add(rev, 1);
}

/* Types whose success changes some file's name, or frees an inode number: every verdict is stale. */
static __always_inline int changes_names(u32 type)
{
    return type == FIM_RENAME || type == FIM_LINK || type == FIM_UNLINK || type == FIM_RMDIR;
}

/* What, besides the inode, an entry must agree on. */
struct verdict_scope {
    u64 revision;
    u64 root_ino;
    u32 root_mnt_id;
    u32 _pad;
};

static __always_inline void verdict_scope_of(struct verdict_scope *v, struct kpath *root, u64 revision)
{
    u64 inode = rd_ptr(root->dentry + OFF_DENTRY_D_INODE);
    v->revision = revision;
    v->root_ino = inode ? rd_ptr(inode + OFF_INODE_I_INO) : 0;
    v->root_mnt_id = rd_u32(mount_of(root->mnt) + OFF_MOUNT_MNT_ID);
}

static __always_inline int verdict_cacheable(struct fim_file *f)
{
    return (f->flags & FIM_F_HAS_INODE) && f->nlink == 1 && !(f->flags & FIM_F_TRUNCATED);
}

/* Is the file known not to be watched for these types, from this root, through this mount? */
static __always_inline int verdict_unwatched(struct fim_file *f, struct verdict_scope *v, u32 mask)
{
    if (!verdict_cacheable(f))
        return 0;
    struct fim_inode_key k = {.ino = f->ino, .dev = f->dev};
    struct fim_verdict *e = verdicts.lookup(&k);
    if (!e || !(e->mask & mask) || e->revision != v->revision || e->revision != verdict_revision() ||
        e->mnt_id != f->mnt_id || e->generation != f->generation || e->root_mnt_id != v->root_mnt_id ||
        e->root_ino != v->root_ino)
        return 0;
    return 1;
}

/* The walk found no approver: remember it (adding the type to an entry that is still valid). */
static __always_inline void verdict_learn(struct fim_file *f, struct verdict_scope *v, u32 mask)
{
    if (!mask || !verdict_cacheable(f) || v->revision != verdict_revision())
        return;
    struct fim_inode_key k = {.ino = f->ino, .dev = f->dev};
    struct fim_verdict n = {
        .mask = mask,
        .mnt_id = f->mnt_id,
        .revision = v->revision,
        .generation = f->generation,
        .root_mnt_id = v->root_mnt_id,
        .root_ino = v->root_ino,
    };
    struct fim_verdict *e = verdicts.lookup(&k);
    if (e && e->revision == n.revision && e->mnt_id == n.mnt_id && e->generation == n.generation &&
        e->root_mnt_id == n.root_mnt_id && e->root_ino == n.root_ino) {
        if (e->mask & mask)
            return;
        n.mask |= e->mask;
    }
    verdicts.update(&k, &n);
    verdict_count(FIM_VC_LEARNED);
}

/* Mount changes move whole trees to other paths (or out of reach): every verdict is stale. The
 * syscalls that attach, detach or move mounts; fsmount/open_tree make detached mounts, which only
 * move_mount attaches. Tracked whatever the sensor's state and whoever calls. */
#define VERDICT_MOUNT_PROBE(sc)                    \
    TRACEPOINT_PROBE(syscalls, sys_exit_##sc)      \
    {                                              \
        if (args->ret == 0)                        \
            invalidate_verdicts();                 \
        return 0;                                  \
    }

VERDICT_MOUNT_PROBE(mount)
VERDICT_MOUNT_PROBE(umount)
VERDICT_MOUNT_PROBE(move_mount)
VERDICT_MOUNT_PROBE(pivot_root)

#if FIM_URING_NAME_OPS
/* io_uring renames, unlinks and links never pass the syscall tracepoints: stale on submission
 * (before the name changes) and again on completion (after it), as a syscall's exit would. The
 * sensor attaches these to io_uring:io_uring_submit_req / io_uring_complete, field offsets from
 * their tracefs format (FIM_URING_*). */
#define IORING_OP_RENAMEAT 35 /* uapi numbers: stable */
#define IORING_OP_UNLINKAT 36
#define IORING_OP_LINKAT 39
BPF_TABLE("lru_hash", u64, u8, uring_name_ops, 4096); /* requests in flight, by io_kiocb pointer */

int verdict_uring_submit(void *ctx)
{
    u8 op = 0;
    u64 req = 0;
    bpf_probe_read_kernel(&op, 1, ctx + FIM_URING_SUBMIT_OPCODE);
    if (op != IORING_OP_RENAMEAT && op != IORING_OP_UNLINKAT && op != IORING_OP_LINKAT)
        return 0;
    bpf_probe_read_kernel(&req, 8, ctx + FIM_URING_SUBMIT_REQ);
    u8 one = 1;
    uring_name_ops.update(&req, &one);
    invalidate_verdicts();
    return 0;
}

int verdict_uring_complete(void *ctx)
{
    u64 req = 0;
    bpf_probe_read_kernel(&req, 8, ctx + FIM_URING_COMPLETE_REQ);
    if (uring_name_ops.lookup(&req)) {
        uring_name_ops.delete(&req);
        invalidate_verdicts();
    }
    return 0;
}
#endif

#endif
