/* Coalescing of identical repeats: one thread doing the same operation on the same file again and
 * again (a tight open/close loop, a logger re-opening its file) sends one record per window; the
 * repeats are counted in `repeat_counts`, which user space reads when the window has closed and
 * reports as a record with the count and the first and last times.
 *
 * Identical means every field of `struct coalesce_key`: thread, event type, syscall, file (inode,
 * device, mount, i_generation, path length), the call's arguments (open flags, create mode, new
 * mode, new owner, truncate length), its result, the caller's uid/gid/euid, comm and cgroup, and
 * the verdict revision (any rename, link, unlink, rmdir or mount change anywhere opens new
 * windows, so a file that got another path is never folded into a window of its old one).
 *
 * Everything fails open: a window whose opening record could not be written, a full
 * `repeat_counts`, a window user space already flushed -- the event is sent as a record of its own.
 * Only files with one link and an exact path (from their dentry) are folded. */
#ifndef OTEL_FIM_COALESCE_H
#define OTEL_FIM_COALESCE_H

struct coalesce_key {
    u64 pid_tgid;
    u64 ino;
    u64 revision;
    s64 retval;
    s64 length;
    u64 cgroup_id;
    u32 dev;
    u32 mnt_id;
    u32 generation;
    u32 type;
    u32 syscall;
    u32 open_flags;
    u32 mode;
    u32 new_uid;
    u32 new_gid;
    u32 uid;
    u32 gid;
    u32 euid;
    u32 path_len;
    u32 _pad;
    char comm[16];
};

struct coalesce_window {
    u64 start; /* ts_boot_ns of the record that opened it: the repeat_counts key with pid_tgid */
};

struct coalesce_scratch {
    struct coalesce_key key;
};

BPF_TABLE("lru_hash", struct coalesce_key, struct coalesce_window, coalesce_windows, 8192);
/* Not LRU: an entry leaves only when user space has reported it (a full map stops folding). */
BPF_HASH(repeat_counts, struct fim_repeat_key, struct fim_repeat_count, 16384);
BPF_PERCPU_ARRAY(coalesce_scratches, struct coalesce_scratch, 1);

BPF_PERCPU_ARRAY(coalesce_counters, u64, FIM_CC_MAX); /* indexes: enum fim_coalesce_counter */

static __always_inline void coalesce_count(u32 counter)
{
    u64 *v = coalesce_counters.lookup(&counter);
    if (v)
        *v += 1;
}

static __always_inline int coalescable(struct fim_event *ev)
{
    u32 t = ev->type;
    if (t != FIM_OPEN && t != FIM_CHMOD && t != FIM_CHOWN && t != FIM_UTIMES && t != FIM_TRUNCATE)
        return 0; /* two names, an xattr name, or a call that cannot repeat on one inode */
    struct fim_file *f = &ev->file;
    return (f->flags & FIM_F_HAS_INODE) && (f->flags & FIM_F_FROM_DENTRY) && f->nlink == 1 &&
           !(f->flags & FIM_F_TRUNCATED);
}

static __always_inline void coalesce_key_of(struct coalesce_key *k, struct fim_event *ev, u64 revision)
{
    __builtin_memset(k, 0, sizeof(*k));
    k->pid_tgid = ((u64)ev->pid << 32) | ev->tid;
    k->ino = ev->file.ino;
    k->revision = revision;
    k->retval = ev->retval;
    k->length = ev->length;
    k->cgroup_id = ev->cgroup_id;
    k->dev = ev->file.dev;
    k->mnt_id = ev->file.mnt_id;
    k->generation = ev->file.generation;
    k->type = ev->type;
    k->syscall = ev->syscall;
    k->open_flags = ev->open_flags;
    k->mode = ev->mode;
    k->new_uid = ev->new_uid;
    k->new_gid = ev->new_gid;
    k->uid = ev->uid;
    k->gid = ev->gid;
    k->euid = ev->euid;
    k->path_len = ev->file.path_len;
    __builtin_memcpy(k->comm, ev->comm, sizeof(k->comm));
}

/* Returns 1 when the event was folded into an open window (do not send it). Otherwise, when the
 * event can open a window, marks it FIM_CO_OPENED and makes its repeat_counts entry: the caller
 * sends it and, if that fails, calls coalesce_abandon. */
static __always_inline int coalesce(struct fim_event *ev, u64 revision, u32 window_ms)
{
    ev->coalesce = 0;
    u32 zero = 0;
    struct coalesce_scratch *s = coalesce_scratches.lookup(&zero);
    if (!window_ms || !s || !coalescable(ev))
        return 0;
    coalesce_key_of(&s->key, ev, revision);
    u64 now = ev->ts_boot_ns;
    struct coalesce_window *w = coalesce_windows.lookup(&s->key);
    if (w && now - w->start <= (u64)window_ms * 1000000ULL) {
        struct fim_repeat_key rk = {.ts_boot_ns = w->start, .pid_tgid = s->key.pid_tgid};
        struct fim_repeat_count *c = repeat_counts.lookup(&rk);
        if (c) {
            __sync_fetch_and_add(&c->count, 1);
            c->last_ns = now;
            coalesce_count(FIM_CC_FOLDED);
            return 1;
        }
        /* already reported by user space: a new window */
    }
    struct fim_repeat_key rk = {.ts_boot_ns = now, .pid_tgid = s->key.pid_tgid};
    struct fim_repeat_count none = {.last_ns = now};
    if (repeat_counts.insert(&rk, &none) != 0) {
        coalesce_count(FIM_CC_FULL);
        return 0;
    }
    struct coalesce_window nw = {.start = now};
    coalesce_windows.update(&s->key, &nw);
    ev->coalesce = FIM_CO_OPENED;
    coalesce_count(FIM_CC_OPENED);
    return 0;
}

/* The opening record was not sent: nobody would report its window. */
static __always_inline void coalesce_abandon(struct fim_event *ev)
{
    if (!(ev->coalesce & FIM_CO_OPENED))
        return;
    u32 zero = 0;
    struct coalesce_scratch *s = coalesce_scratches.lookup(&zero);
    struct fim_repeat_key rk = {.ts_boot_ns = ev->ts_boot_ns, .pid_tgid = ((u64)ev->pid << 32) | ev->tid};
    repeat_counts.delete(&rk);
    if (s)
        coalesce_windows.delete(&s->key);
}

#endif
