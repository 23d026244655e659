/* File operations submitted through io_uring, reported like their syscall twins.
 *
 * io_uring runs a request in the submitting task, an io-wq worker thread or the SQPOLL thread,
 * never through the syscall tracepoints. Two io_uring tracepoints bracket it instead:
 *   io_uring_submit_req  the request is prepared: its operation's data (dfd, flags, mode, and the
 *                        kernel's own copy of each name, which the submitter can no longer change)
 *                        is read from the io_kiocb by BTF offsets, in the submitter's context,
 *                        whose identity is kept with the request; the cheap filters run here
 *   io_uring_complete    the result is known: the request becomes a `struct pending` like a
 *                        syscall's and joins the same chain (complete_call: policy, approvers,
 *                        discarders, name lookup, path walk, ring buffer)
 * A request with IOSQE_CQE_SKIP_SUCCESS posts no completion when it succeeds, so it is completed
 * at submission instead, its outcome unknown: retval -EINPROGRESS.
 *
 * Compiled after file_syscalls.c, in the same BPF object (struct pending, the filters, the chain).
 * The IOU_* constants come from BTF (otel_fim/kernel/io_uring.py); an opcode this kernel lacks is
 * -1 and never matches. */

#define EINPROGRESS 115

struct uring_req {
    struct pending p; /* name/name2/xattr point into `names` once the request completes */
    u32 opcode;
    u32 _pad;
    char names[2][FIM_PATH_MAX];
};

/* Requests between submission and completion, keyed by their struct io_kiocb *. LRU: a request
 * whose completion never came (a ring torn down) does not hold a slot for ever. At 8 KiB a slot,
 * 512 slots are 4 MiB: more file operations in flight at once evict the oldest. */
BPF_TABLE("lru_hash", u64, struct uring_req, uring_reqs, 512);
BPF_PERCPU_ARRAY(uring_scratch, struct uring_req, 1);

static __always_inline int uring_file_op(int op)
{
    return op == IOU_OP_OPENAT || op == IOU_OP_OPENAT2 || op == IOU_OP_UNLINKAT ||
           op == IOU_OP_RENAMEAT || op == IOU_OP_MKDIRAT || op == IOU_OP_LINKAT ||
           op == IOU_OP_SYMLINKAT || op == IOU_OP_FTRUNCATE || op == IOU_OP_SETXATTR ||
           op == IOU_OP_FSETXATTR;
}

/* The kernel's copy of a name (struct filename *) into names[idx]; returns where it went. */
static __always_inline u64 copy_name(struct uring_req *r, u32 idx, u64 filename)
{
    if (!filename)
        return 0;
    char *dst = r->names[idx & 1];
    if (bpf_probe_read_kernel_str(dst, FIM_PATH_MAX, (void *)rd_ptr(filename + OFF_FILENAME_NAME)) < 0)
        dst[0] = 0;
    return (u64)dst;
}

/* The operation's data, read as its syscall twin's arguments. The op's struct overlays the start
 * of struct io_kiocb (io_kiocb_to_cmd). */
static __always_inline int uring_prepare(struct uring_req *r, u64 req, int op)
{
    struct pending *p = &r->p;
    __builtin_memset(p, 0, sizeof(*p));
    r->opcode = op;
    p->io_uring = 1;
    if (op == IOU_OP_OPENAT || op == IOU_OP_OPENAT2) {
        p->type = FIM_OPEN;
        p->syscall = op == IOU_OP_OPENAT ? SC_OPENAT : SC_OPENAT2;
        /* a direct descriptor (file_slot) is no fd: found again by its name */
        p->locate = rd_u32(req + OFF_IO_OPEN_FILE_SLOT) ? LOC_NAME : LOC_OPEN;
        p->dfd = (s32)rd_u32(req + OFF_IO_OPEN_DFD);
        p->open_flags = rd_u32(req + OFF_IO_OPEN_HOW + OFF_OPEN_HOW_FLAGS);
        p->mode = rd_u32(req + OFF_IO_OPEN_HOW + OFF_OPEN_HOW_MODE);
        p->name = copy_name(r, 0, rd_ptr(req + OFF_IO_OPEN_FILENAME));
    } else if (op == IOU_OP_UNLINKAT) {
        p->type = (rd_u32(req + OFF_IO_UNLINK_FLAGS) & AT_REMOVEDIR) ? FIM_RMDIR : FIM_UNLINK;
        p->syscall = SC_UNLINKAT;
        p->dfd = (s32)rd_u32(req + OFF_IO_UNLINK_DFD);
        p->name = copy_name(r, 0, rd_ptr(req + OFF_IO_UNLINK_FILENAME));
    } else if (op == IOU_OP_MKDIRAT) {
        p->type = FIM_MKDIR;
        p->syscall = SC_MKDIRAT;
        p->dfd = (s32)rd_u32(req + OFF_IO_MKDIR_DFD);
        p->mode = rd_u32(req + OFF_IO_MKDIR_MODE);
        p->name = copy_name(r, 0, rd_ptr(req + OFF_IO_MKDIR_FILENAME));
    } else if (op == IOU_OP_RENAMEAT) {
        p->type = FIM_RENAME;
        p->syscall = SC_RENAMEAT;
        p->dfd = (s32)rd_u32(req + OFF_IO_RENAME_OLD_DFD);
        p->dfd2 = (s32)rd_u32(req + OFF_IO_RENAME_NEW_DFD);
        p->name = copy_name(r, 0, rd_ptr(req + OFF_IO_RENAME_OLDPATH));
        p->name2 = copy_name(r, 1, rd_ptr(req + OFF_IO_RENAME_NEWPATH));
    } else if (op == IOU_OP_LINKAT) {
        p->type = FIM_LINK;
        p->syscall = SC_LINKAT;
        p->dfd = (s32)rd_u32(req + OFF_IO_LINK_OLD_DFD);
        p->dfd2 = (s32)rd_u32(req + OFF_IO_LINK_NEW_DFD);
        p->name = copy_name(r, 0, rd_ptr(req + OFF_IO_LINK_OLDPATH));
        p->name2 = copy_name(r, 1, rd_ptr(req + OFF_IO_LINK_NEWPATH));
        /* AT_EMPTY_PATH with an empty name: the dirfd itself is the file */
        if ((rd_u32(req + OFF_IO_LINK_FLAGS) & AT_EMPTY_PATH) && (!p->name || r->names[0][0] == 0))
            p->locate = LOC_FD;
    } else if (op == IOU_OP_SYMLINKAT) {
        /* the file is the new link; the target is kept as written */
        p->type = FIM_SYMLINK;
        p->syscall = SC_SYMLINKAT;
        p->dfd = (s32)rd_u32(req + OFF_IO_LINK_NEW_DFD);
        p->dfd2 = AT_FDCWD;
        p->name = copy_name(r, 0, rd_ptr(req + OFF_IO_LINK_NEWPATH));
        p->name2 = copy_name(r, 1, rd_ptr(req + OFF_IO_LINK_OLDPATH));
    } else if (op == IOU_OP_FTRUNCATE) {
        p->type = FIM_TRUNCATE;
        p->syscall = SC_FTRUNCATE;
        p->locate = LOC_FILE; /* req->file, once the request has run (fixed files too) */
        p->dfd = -1;          /* no file (a bad fd): no path, not fd 0's */
        p->length = (s64)rd_ptr(req + OFF_IO_FTRUNC_LEN);
    } else if (op == IOU_OP_SETXATTR || op == IOU_OP_FSETXATTR) {
        p->type = FIM_SETXATTR;
        if (op == IOU_OP_SETXATTR) { /* by name, from the cwd, following a final symlink */
            p->syscall = SC_SETXATTR;
            p->dfd = AT_FDCWD;
            p->name = copy_name(r, 0, rd_ptr(req + OFF_IO_XATTR_FILENAME));
        } else {
            p->syscall = SC_FSETXATTR;
            p->locate = LOC_FILE;
            p->dfd = -1;
        }
        /* the attribute's name, copied in at preparation (struct xattr_name) */
        u64 kname = rd_ptr(req + OFF_IO_XATTR_KNAME);
        if (kname && bpf_probe_read_kernel_str(r->names[1], FIM_XATTR_MAX,
                                               (void *)(kname + OFF_XATTR_NAME_NAME)) > 0)
            p->xattr = (u64)r->names[1];
    } else {
        return -1;
    }
    p->syscall |= FIM_SC_IO_URING;
    return 0;
}

/* The submitter's identity; with SQPOLL the submitting thread is the ring's kernel thread, whose
 * process is named by its group leader. */
static __always_inline void keep_submitter(struct pending *p, int sq_thread)
{
    u64 task = bpf_get_current_task();
    u64 id = bpf_get_current_pid_tgid();
    u64 ugid = bpf_get_current_uid_gid();
    p->sub.tgid = id >> 32;
    p->sub.tid = (u32)id;
    p->sub.ppid = task_ppid(task);
    p->sub.uid = (u32)ugid;
    p->sub.gid = ugid >> 32;
    p->sub.euid = task_euid(task);
    if (sq_thread)
        bpf_probe_read_kernel(p->sub.comm, sizeof(p->sub.comm),
                              (void *)(rd_ptr(task + OFF_TASK_GROUP_LEADER) + OFF_TASK_COMM));
    else
        bpf_get_current_comm(p->sub.comm, sizeof(p->sub.comm));
}

/* Hand the request to the syscalls' completion chain, as the current thread's pending call. */
static __always_inline int uring_complete(void *ctx, struct uring_req *r, s64 retval)
{
    struct pending *p = &r->p;
    if (p->locate != LOC_FILE && p->name)
        p->name = (u64)r->names[0];
    if (p->name2)
        p->name2 = (u64)r->names[1];
    if (p->xattr)
        p->xattr = (u64)r->names[1];
    p->retval = retval;
    u64 id = bpf_get_current_pid_tgid();
    u32 type = p->type;
    /* A syscall of this thread in flight (never an io-wq worker's): do not overwrite it. */
    if (pending_calls.insert(&id, p) != 0) {
        count(type, FIM_C_SEEN);
        count(type, FIM_C_LOST);
        return 0;
    }
    tail_calls.call(ctx, FIM_TAIL_COMPLETE_CALL);
    pending_calls.delete(&id);
    return 0;
}

TRACEPOINT_PROBE(io_uring, io_uring_submit_req)
{
    int op = args->opcode;
    if (!uring_file_op(op))
        return 0;
    u64 req = (u64)args->req;
    uring_reqs.delete(&req); /* an earlier request at this address that never completed */
    if (untracked(bpf_get_current_pid_tgid()))
        return 0;
    u32 zero = 0;
    struct uring_req *r = uring_scratch.lookup(&zero);
    if (!r || uring_prepare(r, req, op) < 0 || dropped_early(&r->p))
        return 0;
    keep_submitter(&r->p, args->sq_thread);
    if (args->flags & (1ULL << IOU_REQ_F_CQE_SKIP_BIT)) {
        /* Completed now, before it runs: its struct file is not assigned yet, its fd is known
         * (a registered file's index is not an fd: -1, and the file stays unnamed). */
        if (r->p.locate == LOC_FILE) {
            r->p.locate = LOC_FD;
            r->p.dfd = (args->flags & (1ULL << IOU_REQ_F_FIXED_FILE_BIT))
                           ? -1 : (s32)rd_u32(req + OFF_IO_KIOCB_CQE_FD);
        }
        return uring_complete(args, r, -EINPROGRESS);
    }
    if (uring_reqs.update(&req, r) != 0) {
        count(r->p.type, FIM_C_SEEN);
        count(r->p.type, FIM_C_LOST);
    }
    return 0;
}

TRACEPOINT_PROBE(io_uring, io_uring_complete)
{
    u64 req = (u64)args->req;
    struct uring_req *kept = uring_reqs.lookup(&req);
    if (!kept)
        return 0;
    u32 zero = 0;
    struct uring_req *r = uring_scratch.lookup(&zero);
    if (!r)
        return 0;
    /* A copy of its own: the slot is freed at once and may be reused on another CPU. */
    bpf_probe_read_kernel(r, sizeof(*r), kept);
    uring_reqs.delete(&req);
    u8 opcode = 0;
    bpf_probe_read_kernel(&opcode, 1, (void *)(req + OFF_IO_KIOCB_OPCODE));
    if (opcode != r->opcode)
        return 0; /* not the request that was kept (cannot happen: each submission replaces it) */
    if (r->p.locate == LOC_FILE)
        r->p.name = rd_ptr(req + OFF_IO_KIOCB_FILE);
    return uring_complete(args, r, args->res);
}
