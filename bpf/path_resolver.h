/* Absolute paths from dentries, in the kernel: user space cannot do it later (the process, its cwd
 * and its descriptors may be gone by the time the event is read).
 *
 * A path is written backwards, leaf first, into a per-CPU scratch buffer ending at BASE_END; a
 * name passed by the process is appended after BASE_END. At a mount root the walk continues from
 * the mount point in the parent mount, so paths cross mounts; it stops at the process's root, so a
 * chrooted or containerised process gets the path it sees. */
#ifndef OTEL_FIM_PATH_RESOLVER_H
#define OTEL_FIM_PATH_RESOLVER_H

#define BASE_END FIM_PATH_MAX          /* the walked part ends here ... */
#define SCRATCH_SIZE (3 * FIM_PATH_MAX) /* ... the appended name may reach 2 * FIM_PATH_MAX */
#define NAME_MASK 255                  /* NAME_MAX: one component's bytes */

struct path_scratch {
    char buf[SCRATCH_SIZE];
};

BPF_PERCPU_ARRAY(path_scratch, struct path_scratch, 1);

struct resolved {
    u32 start; /* path = buf[start, end) */
    u32 end;
    u16 flags;
};

static __always_inline u64 mount_of(u64 vfsmnt)
{
    return vfsmnt - OFF_MOUNT_MNT; /* container_of(vfsmnt, struct mount, mnt) */
}

struct walk_state {
    u64 dentry;
    u64 vfsmnt;
    u64 mnt;
    u64 root_dentry;
    u64 root_mnt;
    u32 pos;
    u16 flags;
    u16 done;
    u32 check_mask; /* event types whose directory approvers are checked on the way up (0: none) */
    u32 approved;   /* a directory met on the way is watched */
};

static __always_inline void walk_begin(struct walk_state *w, struct kpath *from, struct kpath *root)
{
    w->dentry = from->dentry;
    w->vfsmnt = from->mnt;
    w->mnt = mount_of(from->mnt);
    w->root_dentry = root->dentry;
    w->root_mnt = root->mnt;
    w->pos = BASE_END;
    w->flags = 0;
    w->done = 0;
    w->approved = 0;
}

/* One level of the walk (a mount crossing counts as one). Walks are long and branchy, so they run
 * WALK_STEPS levels per program and continue through tail calls: each program is verified alone. */
static __always_inline void walk_step(struct walk_state *w, struct path_scratch *s)
{
    if (w->done)
        return;
    if (w->dentry == w->root_dentry && w->vfsmnt == w->root_mnt) {
        w->done = 1;
        return;
    }
    /* Inode identity: a bind mount of a watched directory is the same directory. */
    if (w->check_mask && !w->approved && dir_approved(w->dentry, w->check_mask))
        w->approved = 1;
    u64 mnt_root = rd_ptr(w->vfsmnt + OFF_VFSMOUNT_MNT_ROOT);
    u64 parent = rd_ptr(w->dentry + OFF_DENTRY_D_PARENT);
    if (w->dentry == mnt_root || w->dentry == parent) {
        u64 mnt_parent = rd_ptr(w->mnt + OFF_MOUNT_MNT_PARENT);
        if (mnt_parent == w->mnt || mnt_parent == 0) {
            /* The namespace's top without meeting the process root: the file lies outside what
             * the process can see (an fd from before a chroot); the path is right from the
             * namespace root. */
            w->flags |= FIM_F_UNREACHABLE;
            w->done = 1;
            return;
        }
        w->dentry = rd_ptr(w->mnt + OFF_MOUNT_MNT_MOUNTPOINT);
        w->mnt = mnt_parent;
        w->vfsmnt = mnt_parent + OFF_MOUNT_MNT;
        return;
    }
    u32 len = rd_u32(w->dentry + OFF_DENTRY_D_NAME + OFF_QSTR_LEN) & NAME_MASK;
    u64 name = rd_ptr(w->dentry + OFF_DENTRY_D_NAME + OFF_QSTR_NAME);
#if FIM_NAME_LOOKUP
    dcache_remember(parent, w->dentry, rd_ptr(w->dentry + OFF_DENTRY_D_NAME + OFF_QSTR_HASH_LEN));
#endif
    if (w->pos < len + 1 || w->pos > BASE_END) {
        w->flags |= FIM_F_TRUNCATED;
        w->done = 1;
        return;
    }
    u32 pos = w->pos - len;
    u64 at = pos, n = len;
    BOUND(at, 8191);
    BOUND(n, 255);
    bpf_probe_read_kernel(&s->buf[at], n, (void *)name);
    pos -= 1;
    at = pos;
    BOUND(at, 8191);
    s->buf[at] = '/';
    w->pos = pos;
    w->dentry = parent;
}

/* After the walk of an open file's own dentry: the path is exact. */
static __always_inline void finish_exact(struct path_scratch *s, struct walk_state *w,
                                         struct resolved *r)
{
    r->flags = w->flags | FIM_F_FROM_DENTRY;
    r->start = w->pos;
    r->end = BASE_END;
    if (r->start >= BASE_END) { /* the root itself */
        r->start = BASE_END - 1;
        s->buf[BASE_END - 1] = '/';
    }
}

/* After the walk of a base directory (cwd or dirfd) -- or none, for an absolute name: append the
 * name as the process passed it. `.`/`..` and symlinks inside the name are left to user space,
 * which FIM_F_JOINED tells. */
static __always_inline void finish_joined(struct path_scratch *s, struct walk_state *w,
                                          const char *name, u32 kernel_name, int absolute,
                                          struct resolved *r)
{
    r->flags = w->flags | FIM_F_JOINED;
    r->start = w->pos;
    u32 at = BASE_END;
    if (absolute) {
        r->start = BASE_END;
    } else {
        s->buf[BASE_END] = '/';
        at = BASE_END + 1;
    }
    long n = rd_name_str(&s->buf[at], FIM_PATH_MAX, (u64)name, kernel_name);
    if (n <= 1) { /* empty or unreadable name: the base directory itself */
        if (r->start >= BASE_END) {
            r->start = BASE_END - 1;
            s->buf[BASE_END - 1] = '/';
        }
        r->end = BASE_END;
        return;
    }
    if (n == FIM_PATH_MAX)
        r->flags |= FIM_F_TRUNCATED; /* the name itself did not fit */
    r->end = at + (u32)n - 1;
}

/* Copy buf[start, end) into dst (at most FIM_PATH_MAX - 1 bytes, the tail when longer). */
static __always_inline u32 copy_resolved(char *dst, struct path_scratch *s, struct resolved *r)
{
    u32 len = r->end - r->start;
    u32 start = r->start;
    if (r->end < r->start)
        return 0;
    if (len > FIM_PATH_MAX - 1) {
        start = r->end - (FIM_PATH_MAX - 1);
        len = FIM_PATH_MAX - 1;
        r->flags |= FIM_F_TRUNCATED;
    }
    u64 n = len, from = start;
    BOUND(n, 4095);
    BOUND(from, 8191);
    bpf_probe_read_kernel(dst, n, &s->buf[from]);
    return (u32)n;
}

struct filter_scratch {
    struct fim_basename_key basename;
    struct fim_prefix_key prefix;
};
BPF_PERCPU_ARRAY(filter_scratches, struct filter_scratch, 1);

/* Index just after the last '/' in buf[start, end), looking at most NAME_MAX + 1 bytes back
 * (`start` when there is none in reach). */
static __always_inline u32 basename_start(struct path_scratch *s, u32 start, u32 end)
{
    u32 base = start;
#pragma clang loop unroll(disable)
    for (u32 i = 1; i <= NAME_MASK + 1; i++) {
        asm volatile("" : "+r"(i)); /* keep the constant-bounded counter as the loop variable */
        u64 at = end - i;
        if (end < i || at < start)
            break;
        BOUND(at, 8191);
        if (s->buf[at] == '/') {
            base = (u32)at + 1;
            break;
        }
    }
    return base;
}

/* Basename and directory-prefix approvers on a resolved path buf[start, end). */
static __always_inline int path_approved(struct path_scratch *s, u32 start, u32 end, u32 base, u32 mask)
{
    u32 zero = 0;
    struct filter_scratch *fs = filter_scratches.lookup(&zero);
    if (!fs || end <= start || base > end)
        return 0;
    u32 blen = end - base;
    __builtin_memset(&fs->basename, 0, sizeof(fs->basename));
    if (blen > FIM_BASENAME_KEY - 1)
        blen = FIM_BASENAME_KEY - 1;
    u64 n = blen, from = base;
    BOUND(n, 31);
    BOUND(from, 8191);
    bpf_probe_read_kernel(fs->basename.name, n, &s->buf[from]);
    u32 *m = approver_basenames.lookup(&fs->basename);
    if (m && (*m & mask))
        return 1;

    u32 plen = end - start;
    if (plen > FIM_PREFIX_MAX)
        plen = FIM_PREFIX_MAX;
    n = plen;
    from = start;
    BOUND(n, 511);
    BOUND(from, 8191);
    if (n > FIM_PREFIX_MAX)
        return 0;
    bpf_probe_read_kernel(fs->prefix.data, n, &s->buf[from]);
    fs->prefix.prefixlen = (u32)n * 8;
    m = approver_prefixes.lookup(&fs->prefix);
    return m && (*m & mask);
}

#endif
