/* Name lookup in the dentry cache, in the kernel: a name the process passed ("/tmp/x/f",
 * "sub/f") becomes the dentry of its directory -- and, when it exists, of the file itself -- so
 * the event gets an exact path and can be approved or dropped here instead of in user space.
 *
 * The kernel's own lookup hashes into dentry_hashtable, whose address BPF cannot learn on these
 * kernels (no CONFIG_KALLSYMS_ALL). This scans a directory's children list instead, a bounded
 * number of entries, matching names byte for byte. At sys_exit the call has just walked the same
 * names, so their dentries are cached. Every doubt ends the lookup where it is and leaves the rest
 * of the name as passed (user space resolves it, as it did before the lookup): a component not
 * found within reach, a symlinked directory, "..", an automount point, a component longer than
 * LK_COMP_MAX, a mount point whose mount is not found among the mount's children. So the lookup
 * can only make a path exact; it never makes one wrong. */
#ifndef OTEL_FIM_NAME_LOOKUP_H
#define OTEL_FIM_NAME_LOOKUP_H

#define LK_COMPONENTS 16 /* components of one name resolved at most (the rest stays as passed) */
#define LK_NAME_MAX 256  /* bytes of a name parsed */
#define LK_COMP_MAX 64   /* bytes of one component compared (a longer one ends the lookup) */
#define LK_VISITS 96     /* children or mounts looked at per program */
#define LK_HOPS 2        /* programs per name: the whole chain must stay within 33 tail calls */

enum lk_state {
    LK_NEXT = 0, /* take the next component */
    LK_SCAN,     /* looking for it among the directory's children */
    LK_MOUNTS,   /* it is a mount point: looking for the mount among the mount's children */
    LK_STOP,     /* the rest of the name stays as passed */
    LK_FINAL,    /* the last component was found: `hit` */
};

/* What is known of the last component when the lookup ends. */
enum lk_final {
    LK_FINAL_UNKNOWN = 0,
    LK_FINAL_ABSENT, /* no such name in its directory (a negative dentry, or none at all) */
    LK_FINAL_FOUND,  /* `hit` is its dentry */
};

struct name_lookup {
    u64 dir;    /* the dentry the name is resolved to so far ... */
    u64 vfsmnt; /* ... and its mount */
    u64 node;   /* the next child (struct hlist_node *) or child mount (struct list_head *) */
    u64 hit;    /* the mount point being crossed, or the last component's dentry */
    u64 key[LK_COMP_MAX / 8]; /* the current component, zero-padded */
    u16 off[LK_COMPONENTS + 1]; /* where each component starts in the name */
    u8 len[LK_COMPONENTS + 1];
    u8 absolute; /* the name starts with '/' (from the process root) */
    u32 parsed; /* components found in the name (at most LK_COMPONENTS) */
    u32 count;  /* components to resolve (the last is the file's own when `whole`) */
    u32 whole;  /* the name ends with the last of them */
    u32 idx;    /* the current component */
    u32 state;  /* enum lk_state */
    u32 final;  /* enum lk_final */
    u32 hops;
    u32 p_start, p_in, p_ended; /* lk_parse's loop state */
};

/* indexes: enum fim_lookup_counter (events.h) */
BPF_PERCPU_ARRAY(lookup_counters, u64, LKC_MAX);

static __always_inline void lk_count(u32 counter)
{
    u64 *v = lookup_counters.lookup(&counter);
    if (v)
        *v += 1;
}

struct lookup_name_buf {
    char buf[LK_NAME_MAX + LK_COMP_MAX]; /* room to read a whole key past any component start */
};
BPF_PERCPU_ARRAY(lookup_names, struct lookup_name_buf, 1);

#if FIM_NAME_LOOKUP
/* Split the name into components (empty ones from "//" skipped). The loop keeps its state in
 * the map value, not in registers: the verifier then sees one state per iteration instead of one
 * per combination of values, which it could not finish exploring. */
static __always_inline void lk_parse(struct name_lookup *lk, struct lookup_name_buf *b, u64 name)
{
    lk->parsed = 0;
    lk->count = 0;
    lk->whole = 0;
    lk->idx = 0;
    lk->final = LK_FINAL_UNKNOWN;
    lk->state = LK_STOP;
    lk->p_start = 0;
    lk->p_in = 0;
    lk->p_ended = 0;
    long n = bpf_probe_read_user_str(b->buf, LK_NAME_MAX, (void *)name);
    if (n <= 1)
        return;
#pragma clang loop unroll(disable)
    for (u32 i = 0; i < LK_NAME_MAX; i++) {
        asm volatile("" : "+r"(i));
        char c = b->buf[i & (LK_NAME_MAX - 1)];
        if (c != '/' && c != 0) {
            if (!lk->p_in) {
                lk->p_in = 1;
                lk->p_start = i;
            }
            continue;
        }
        if (lk->p_in) {
            u32 k = lk->parsed;
            BOUND(k, 15);
            u32 len = i - lk->p_start;
            lk->off[k] = lk->p_start;
            lk->len[k] = len > 255 ? 255 : len;
            lk->parsed += 1;
            lk->p_in = 0;
        }
        if (c == 0) {
            lk->p_ended = 1;
            break;
        }
        if (lk->parsed >= LK_COMPONENTS)
            break;
    }
    u32 count = lk->parsed;
    if (count == 0)
        return;
    /* A name cut at LK_NAME_MAX, or with more than LK_COMPONENTS components: the last one parsed
     * is not known to be the last; it becomes where the unresolved rest starts. */
    lk->whole = lk->p_ended && n < LK_NAME_MAX;
    lk->count = lk->whole ? count : count - 1;
    lk->state = LK_NEXT;
}

/* Where the part of the name that is not resolved starts. */
static __always_inline u32 lk_rest(struct name_lookup *lk)
{
    u32 k = lk->idx;
    BOUND(k, 15);
    return lk->off[k];
}

static __always_inline int lk_is_last(struct name_lookup *lk)
{
    return lk->whole && lk->idx + 1 == lk->count;
}

/* Does dentry `d` carry the current component's name? */
static __always_inline int lk_name_matches(struct name_lookup *lk, u64 d)
{
    u32 k = lk->idx;
    BOUND(k, 15);
    u32 len = lk->len[k];
    if (rd_u32(d + OFF_DENTRY_D_NAME + OFF_QSTR_LEN) != len)
        return 0;
    u64 name[LK_COMP_MAX / 8] = {};
    u64 n = len;
    BOUND(n, 63);
    bpf_probe_read_kernel(name, n, (void *)rd_ptr(d + OFF_DENTRY_D_NAME + OFF_QSTR_NAME));
    u64 diff = 0;
#pragma unroll
    for (u32 w = 0; w < LK_COMP_MAX / 8; w++)
        diff |= name[w] ^ lk->key[w];
    return diff == 0;
}

/* The current component is the directory `d`: descend, or cross the mount on it first. */
static __always_inline void lk_descend(struct name_lookup *lk, u64 d)
{
    u32 flags = rd_u32(d + OFF_DENTRY_D_FLAGS);
    if ((flags & (DCACHE_NEED_AUTOMOUNT | DCACHE_MANAGE_TRANSIT)) ||
        (flags & DCACHE_ENTRY_TYPE) != DCACHE_DIRECTORY_TYPE) {
        lk->state = LK_STOP; /* a symlink (or an automount): user space follows it */
        return;
    }
    if (flags & DCACHE_MOUNTED) {
        lk->hit = d;
        lk->node = rd_ptr(mount_of(lk->vfsmnt) + OFF_MOUNT_MNT_MOUNTS); /* list_head.next */
        lk->state = LK_MOUNTS;
        return;
    }
    lk->dir = d;
    lk->idx++;
    lk->state = LK_NEXT;
}

/* The current component is the positive dentry `d`. */
static __always_inline void lk_found(struct name_lookup *lk, u64 d)
{
    if (lk_is_last(lk)) {
        lk->hit = d;
        lk->final = LK_FINAL_FOUND;
        lk->state = LK_FINAL;
        return;
    }
    lk_descend(lk, d);
}

/* Start looking for the next component in lk->dir: in the dentry cache map, else its children. */
static __always_inline void lk_next(struct name_lookup *lk, struct lookup_name_buf *b)
{
    if (lk->idx >= lk->count) {
        lk->state = LK_STOP;
        return;
    }
    u32 k = lk->idx;
    BOUND(k, 15);
    u32 len = lk->len[k];
    u32 off = lk->off[k];
    BOUND(off, 255);
    if (len >= LK_COMP_MAX) {
        lk->state = LK_STOP;
        return;
    }
    if (b->buf[off] == '.' && (len == 1 || (len == 2 && b->buf[(off + 1) & 255] == '.'))) {
        if (len == 1 && !lk_is_last(lk))
            lk->idx++; /* "." names the same directory */
        else
            lk->state = LK_STOP; /* "..", or a "." the call itself handles */
        return;
    }
    bpf_probe_read_kernel(lk->key, LK_COMP_MAX, &b->buf[off]);
#pragma unroll
    for (u32 w = 0; w < LK_COMP_MAX / 8; w++) {
        if (w * 8 >= len)
            lk->key[w] = 0;
        else if (w * 8 + 8 > len)
            lk->key[w] &= (1ULL << (8 * (len - w * 8))) - 1; /* little-endian: the first bytes */
    }
    struct dcache_key ck = {.parent = lk->dir};
    ck.hash_len = ((u64)len << 32) | name_hash(lk->dir, lk->key, len);
    u64 *cached = dentry_cache.lookup(&ck);
    if (cached) {
        u64 d = *cached;
        if (rd_ptr(d + OFF_DENTRY_D_PARENT) == lk->dir &&
            rd_ptr(d + OFF_DENTRY_D_NAME + OFF_QSTR_HASH_LEN) == ck.hash_len && lk_name_matches(lk, d) &&
            rd_ptr(d + OFF_DENTRY_D_HASH_PPREV) && rd_ptr(d + OFF_DENTRY_D_INODE)) {
            lk_count(LKC_CACHE_HIT);
            lk_found(lk, d);
            return;
        }
    }
    lk->node = rd_ptr(lk->dir + OFF_DENTRY_D_CHILDREN); /* hlist_head.first */
    lk->state = LK_SCAN;
}

/* One child of the directory. */
static __always_inline void lk_scan(struct name_lookup *lk)
{
    u64 node = lk->node;
    if (!node) { /* the whole list: no such name */
        if (lk_is_last(lk))
            lk->final = LK_FINAL_ABSENT;
        lk->state = LK_STOP;
        return;
    }
    u64 d = node - OFF_DENTRY_D_SIB;
    lk->node = rd_ptr(node); /* hlist_node.next */
    if (!lk_name_matches(lk, d) || !rd_ptr(d + OFF_DENTRY_D_HASH_PPREV))
        return; /* another name, or an unhashed (deleted) dentry that kept it */
    if (!rd_ptr(d + OFF_DENTRY_D_INODE)) { /* hashed and negative: the name does not exist */
        if (lk_is_last(lk))
            lk->final = LK_FINAL_ABSENT;
        lk->state = LK_STOP;
        return;
    }
    lk_count(LKC_SCAN_HIT);
    dcache_remember(lk->dir, d, rd_ptr(d + OFF_DENTRY_D_NAME + OFF_QSTR_HASH_LEN));
    lk_found(lk, d);
}

/* One child mount of the current mount: is it the one on lk->hit? */
static __always_inline void lk_mounts(struct name_lookup *lk)
{
    u64 mnt = mount_of(lk->vfsmnt);
    u64 node = lk->node;
    if (!node || node == mnt + OFF_MOUNT_MNT_MOUNTS) {
        /* None here: the mount on this dentry belongs to another mount of the same file system
         * (a bind mount) or another namespace; in this mount it is a plain directory. */
        lk->dir = lk->hit;
        lk->idx++;
        lk->state = LK_NEXT;
        return;
    }
    u64 child = node - OFF_MOUNT_MNT_CHILD;
    lk->node = rd_ptr(node);
    if (rd_ptr(child + OFF_MOUNT_MNT_MOUNTPOINT) != lk->hit)
        return;
    lk->vfsmnt = child + OFF_MOUNT_MNT;
    u64 root = rd_ptr(lk->vfsmnt + OFF_VFSMOUNT_MNT_ROOT);
    if (rd_u32(root + OFF_DENTRY_D_FLAGS) & DCACHE_MOUNTED) { /* mounts stacked on one point */
        lk->hit = root;
        lk->node = rd_ptr(child + OFF_MOUNT_MNT_MOUNTS);
        return;
    }
    lk->dir = root;
    lk->idx++;
    lk->state = LK_NEXT;
}

/* Advance the lookup by up to LK_VISITS steps. */
static __always_inline void lk_run(struct name_lookup *lk, struct lookup_name_buf *b)
{
#pragma clang loop unroll(disable)
    for (u32 i = 0; i < LK_VISITS; i++) {
        asm volatile("" : "+r"(i));
        u32 state = lk->state;
        if (state == LK_NEXT)
            lk_next(lk, b);
        else if (state == LK_SCAN)
            lk_scan(lk);
        else if (state == LK_MOUNTS)
            lk_mounts(lk);
        else
            break;
    }
}

#endif /* FIM_NAME_LOOKUP */

#endif
