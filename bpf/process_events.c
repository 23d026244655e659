/* Process context captured in the kernel: sched_process_exec / _fork / _exit -> `proc_events`.
 *
 * Compiled after file_syscalls.c into the same object (see otel_fim/process/kernel_module.py), so
 * no name here may clash with it. Everything a short-lived process leaves behind is read here,
 * while the task still exists: executable, argv (from the new image's memory), credentials, start
 * time, parent and the names of the cgroups it runs in (user space derives container ids from
 * them). Offsets are BTF's (-DOFF_* from process/kernel_module.py MEMBERS). */
#include "events.h"
#include "kernel_access.h"

BPF_RINGBUF_OUTPUT(proc_events, PROC_RINGBUF_PAGES);
BPF_PERCPU_ARRAY(proc_scratch, struct fim_proc_event, 1);
/* Per-CPU counters, index = type * FIM_PC_MAX + enum fim_proc_counter. */
BPF_PERCPU_ARRAY(proc_counters, u64, FIM_PROC_TYPE_MAX * FIM_PC_MAX);

static __always_inline void proc_count(u32 idx)
{
    u64 *v = proc_counters.lookup(&idx);
    if (v)
        *v += 1;
}

/* One cgroup's path, leaf first, by walking its kernfs node up FIM_CG_LEVELS levels. */
static __always_inline void proc_read_cgroup(u64 cgrp, struct fim_cgroup_path *out)
{
    u32 level = rd_u32(cgrp + OFF_CGROUP_LEVEL);
    out->level = level;
    out->hierarchy_id = rd_u32(rd_ptr(cgrp + OFF_CGROUP_ROOT) + OFF_CGROUP_ROOT_HIERARCHY_ID);
    u64 kn = rd_ptr(cgrp + OFF_CGROUP_KN);
#pragma unroll
    for (int i = 0; i < FIM_CG_LEVELS; i++) {
        out->names[i][0] = 0;
        if (i < level && kn) {
            bpf_probe_read_kernel_str(out->names[i], FIM_CG_NAME_MAX,
                                      (void *)rd_ptr(kn + OFF_KERNFS_NODE_NAME));
            kn = rd_ptr(kn + OFF_KERNFS_NODE_PARENT);
        }
    }
}

/* The unified hierarchy's cgroup, and the deepest cgroup of the v1 hierarchies the task is in
 * (hybrid machines keep containers' paths in the v1 controllers). */
static __always_inline void proc_read_cgroups(u64 task, struct fim_proc_event *ev)
{
    u64 cset = rd_ptr(task + OFF_TASK_CGROUPS);
    u64 dfl = rd_ptr(cset + OFF_CSS_SET_DFL_CGRP);
    u64 dfl_root = rd_ptr(dfl + OFF_CGROUP_ROOT);
    proc_read_cgroup(dfl, &ev->cg2);
    u64 best = 0;
    u32 best_level = 0;
#pragma unroll
    for (int i = 0; i < FIM_CG_SUBSYS_COUNT; i++) {
        u64 css = rd_ptr(cset + OFF_CSS_SET_SUBSYS + i * 8);
        u64 cg = css ? rd_ptr(css + OFF_CSS_CGROUP) : 0;
        u32 level = rd_u32(cg + OFF_CGROUP_LEVEL);
        u64 root = rd_ptr(cg + OFF_CGROUP_ROOT);
        if (cg && root != dfl_root && (!best || level > best_level)) {
            best = cg;
            best_level = level;
        }
    }
    if (best) {
        proc_read_cgroup(best, &ev->cg1);
    } else {
        ev->cg1.level = 0;
        ev->cg1.hierarchy_id = 0;
#pragma unroll
        for (int i = 0; i < FIM_CG_LEVELS; i++)
            ev->cg1.names[i][0] = 0;
    }
}

/* The parts every record has, for `task` (the current task, or a fork's child). */
static __always_inline void proc_fill(struct fim_proc_event *ev, u32 type, u64 task)
{
    ev->ts_boot_ns = bpf_ktime_get_boot_ns();
    ev->type = type;
    ev->tid = rd_u32(task + OFF_TASK_PID);
    ev->pid = rd_u32(task + OFF_TASK_TGID);
    ev->ppid = task_ppid(task);
    u64 leader = rd_ptr(task + OFF_TASK_GROUP_LEADER);
    ev->start_boot_ns = rd_ptr((leader ? leader : task) + OFF_TASK_START_BOOTTIME);
    ev->cgroup_id = 0;
    u64 cred = rd_ptr(task + OFF_TASK_CRED);
    ev->uid = rd_u32(cred + OFF_CRED_UID);
    ev->gid = rd_u32(cred + OFF_CRED_GID);
    ev->euid = rd_u32(cred + OFF_CRED_EUID);
    ev->egid = rd_u32(cred + OFF_CRED_EGID);
    ev->exit_code = 0;
    ev->flags = 0;
    ev->args_len = 0;
    bpf_probe_read_kernel_str(ev->comm, sizeof(ev->comm), (void *)(task + OFF_TASK_COMM));
}

static __always_inline void proc_emit(struct fim_proc_event *ev, u64 size)
{
    if (size > sizeof(*ev))
        size = sizeof(*ev);
    asm volatile("" : "+r"(size)); /* keep the clamp in the register the verifier checks */
    u32 idx = ev->type * FIM_PC_MAX + FIM_PC_SENT;
    if (proc_events.ringbuf_output(ev, size, 0) != 0)
        idx = ev->type * FIM_PC_MAX + FIM_PC_LOST;
    if (idx < FIM_PROC_TYPE_MAX * FIM_PC_MAX)
        proc_count(idx);
}

TRACEPOINT_PROBE(sched, sched_process_exec)
{
    u32 zero = 0;
    struct fim_proc_event *ev = proc_scratch.lookup(&zero);
    if (!ev)
        return 0;
    u64 task = bpf_get_current_task();
    proc_fill(ev, FIM_PROC_EXEC, task);
    ev->cgroup_id = bpf_get_current_cgroup_id();
    unsigned short loc = args->data_loc_filename & 0xFFFF;
    bpf_probe_read_kernel_str(ev->filename, sizeof(ev->filename), (char *)args + loc);

    /* argv: the new image's arg area, just written by execve (present in memory). */
    u64 mm = rd_ptr(task + OFF_TASK_MM);
    u64 len = 0;
    if (mm) {
        u64 start = rd_ptr(mm + OFF_MM_ARG_START);
        u64 end = rd_ptr(mm + OFF_MM_ARG_END);
        len = end > start ? end - start : 0;
        if (len > FIM_PROC_ARGS_MAX - 1) {
            len = FIM_PROC_ARGS_MAX - 1;
            ev->flags |= FIM_PF_ARGS_TRUNCATED;
        }
        BOUND(len, 4095);
        if (bpf_probe_read_user(ev->args, len, (void *)start) != 0)
            len = 0;
    } else {
        ev->flags |= FIM_PF_NO_MM;
    }
    ev->args_len = len;
    proc_read_cgroups(task, ev);
    proc_emit(ev, offsetof(struct fim_proc_event, args) + len);
    return 0;
}

/* A new process (not a thread): its task is the newest of its parent's children -- the current
 * thread's, or with CLONE_PARENT its parent's. Threads are never on a children list. */
static __always_inline u64 proc_new_child(u64 parent, u32 child_pid)
{
    u64 last = rd_ptr(parent + OFF_TASK_CHILDREN + 8); /* children.prev: the last added */
    if (!last || last == parent + OFF_TASK_CHILDREN)
        return 0;
    u64 child = last - OFF_TASK_SIBLING;
    if (rd_u32(child + OFF_TASK_PID) != child_pid || rd_u32(child + OFF_TASK_TGID) != child_pid)
        return 0;
    return child;
}

TRACEPOINT_PROBE(sched, sched_process_fork)
{
    u32 zero = 0;
    struct fim_proc_event *ev = proc_scratch.lookup(&zero);
    if (!ev)
        return 0;
    u32 child_pid = args->child_pid;
    u64 task = bpf_get_current_task();
    u64 child = proc_new_child(task, child_pid);
    if (!child)
        child = proc_new_child(rd_ptr(task + OFF_TASK_REAL_PARENT), child_pid);
    if (!child)
        return 0; /* a thread (or, rarely, a child that already left the list: exec still tells) */
    proc_fill(ev, FIM_PROC_FORK, child);
    ev->filename[0] = 0;
    proc_read_cgroups(child, ev);
    proc_emit(ev, offsetof(struct fim_proc_event, args));
    return 0;
}

TRACEPOINT_PROBE(sched, sched_process_exit)
{
    u64 id = bpf_get_current_pid_tgid();
    if ((u32)id != (u32)(id >> 32))
        return 0; /* a thread other than the leader: the process lives on */
    u32 zero = 0;
    struct fim_proc_event *ev = proc_scratch.lookup(&zero);
    if (!ev)
        return 0;
    u64 task = bpf_get_current_task();
    proc_fill(ev, FIM_PROC_EXIT, task);
    ev->exit_code = rd_u32(task + OFF_TASK_EXIT_CODE);
    proc_emit(ev, offsetof(struct fim_proc_event, filename));
    return 0;
}
