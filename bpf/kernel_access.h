/* Reading kernel structures by offsets that user space read from BTF (-DOFF_* constants).
 * No struct layout from headers is trusted: they may be for another kernel version. */
#ifndef OTEL_FIM_KERNEL_ACCESS_H
#define OTEL_FIM_KERNEL_ACCESS_H

/* Mask a variable in place, in the register that is then used: clang drops a mask it can prove
 * redundant, and the verifier, tracking registers not values, then sees an unbounded size. */
#define BOUND(var, mask) asm volatile("%0 &= " #mask : "+r"(var))

static __always_inline u64 rd_ptr(u64 addr)
{
    u64 v = 0;
    bpf_probe_read_kernel(&v, sizeof(v), (void *)addr);
    return v;
}

static __always_inline u32 rd_u32(u64 addr)
{
    u32 v = 0;
    bpf_probe_read_kernel(&v, sizeof(v), (void *)addr);
    return v;
}

static __always_inline u16 rd_u16(u64 addr)
{
    u16 v = 0;
    bpf_probe_read_kernel(&v, sizeof(v), (void *)addr);
    return v;
}

/* A name a call was given: in user memory for a syscall; for io_uring, the kernel's own copy
 * (bpf/io_uring.c), which the submitter can no longer change. */
static __always_inline long rd_name_str(void *dst, u32 size, u64 src, u32 kernel)
{
    if (kernel)
        return bpf_probe_read_kernel_str(dst, size, (void *)src);
    return bpf_probe_read_user_str(dst, size, (void *)src);
}

/* struct path { struct vfsmount *mnt; struct dentry *dentry; } */
struct kpath {
    u64 mnt;    /* struct vfsmount * */
    u64 dentry; /* struct dentry * */
};

static __always_inline void rd_path(u64 addr, struct kpath *p)
{
    p->mnt = rd_ptr(addr + OFF_PATH_MNT);
    p->dentry = rd_ptr(addr + OFF_PATH_DENTRY);
}

/* The struct file * behind a descriptor of the current task, or 0. */
static __always_inline u64 fd_file(u64 task, s64 fd)
{
    if (fd < 0)
        return 0;
    u64 files = rd_ptr(task + OFF_TASK_FILES);
    u64 fdt = rd_ptr(files + OFF_FILES_FDT);
    u32 max_fds = rd_u32(fdt + OFF_FDTABLE_MAX_FDS);
    if ((u64)fd >= max_fds)
        return 0;
    u64 fd_array = rd_ptr(fdt + OFF_FDTABLE_FD);
    /* Descriptors may carry tag bits in the low bits on some kernels: masked off. */
    return rd_ptr(fd_array + (u64)fd * 8) & ~3ULL;
}

static __always_inline u32 task_ppid(u64 task)
{
    u64 parent = rd_ptr(task + OFF_TASK_REAL_PARENT);
    return rd_u32(parent + OFF_TASK_TGID);
}

static __always_inline u32 task_euid(u64 task)
{
    u64 cred = rd_ptr(task + OFF_TASK_CRED);
    return rd_u32(cred + OFF_CRED_EUID);
}

#endif
