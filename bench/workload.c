/* Benchmark workload for otel-fim: file syscalls at C speed, timed by the workload itself.
 *
 *   workload MODE [-n OPS] [-d SECONDS] [-r RATE] [-w EVERY] [-R ROOT] [-T TMPDIR] [-C CACHEDIR]
 *            [-f FILE] [-F TREE_FILES]
 *
 * Modes (each stops after -n operations or -d seconds, whichever comes first):
 *   mixed     noise: compiler-like reads of a source tree, failing include probes, read-only opens
 *             of system files, cache appends, temp file churn (create/write/rename/unlink), object
 *             file rewrites; plus one watched-file modification every -w noise operations (0: none).
 *   openloop  open(O_RDONLY) + close of one non-watched file (-f).
 *   wopenloop open(O_WRONLY|O_CREAT) + close of one non-watched file (-f).
 *   repeat    open(O_WRONLY|O_CREAT) + close of one watched file, as fast as possible (the same
 *             operation by the same process on the same file: what in-kernel coalescing folds).
 *   burst     watched-file modifications only: open(O_WRONLY|O_CREAT|O_TRUNC) + close, of
 *             BURST_FILES distinct files in turn.
 *
 * -r limits the rate of *monitored* syscalls (the ones the sensor traces: open*, rename, unlink,
 * chmod, ...; not read/write/close) per second; 0 means as fast as possible.
 * Prints one JSON line: elapsed (wall) and CPU seconds (user + system: the BPF programs run in the
 * workload's syscalls, so their cost is system time), operations, monitored syscalls, watched
 * modifications.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_PATH 512
#define OBJ_FILES 256
#define WATCHED_FILES 64
#define BURST_FILES 100000
#define RATE_CHECK_EVERY 64

struct opts {
    const char *mode;
    long ops;          /* 0: unlimited */
    double seconds;    /* 0: unlimited */
    double rate;       /* monitored syscalls per second, 0: unlimited */
    long watched_every;
    const char *root, *tmpdir, *cachedir, *file;
    int tree_files;
};

struct counters {
    long ops, syscalls, watched, errors;
};

static char buf[4096];
static char (*tree)[MAX_PATH];
static struct timespec t0;

static const char *system_files[] = {
    /* read-only opens of paths the default policy watches: must not become events */
    "/etc/passwd", "/etc/ld.so.cache", "/etc/nsswitch.conf", "/usr/bin/env",
};
#define N_SYSTEM_FILES (sizeof(system_files) / sizeof(system_files[0]))

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)(t.tv_sec - t0.tv_sec) + (double)(t.tv_nsec - t0.tv_nsec) / 1e9;
}

/* Sleep until `syscalls` fit the requested rate. */
static void pace(const struct opts *o, long syscalls)
{
    if (o->rate <= 0)
        return;
    double due = (double)syscalls / o->rate, t = now_s();
    if (due > t) {
        struct timespec d = {.tv_sec = (time_t)(due - t), .tv_nsec = (long)((due - t - (long)(due - t)) * 1e9)};
        nanosleep(&d, NULL);
    }
}

static uint32_t next_rand(uint32_t *state)
{
    *state = *state * 1664525u + 1013904223u;
    return *state >> 8;
}

static void read_file(struct counters *c, const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    c->syscalls++;
    if (fd < 0) {
        if (errno != ENOENT)
            c->errors++;
        return;
    }
    if (read(fd, buf, sizeof(buf)) < 0)
        c->errors++;
    close(fd);
}

static void write_file(struct counters *c, const char *path, int flags, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | flags, 0644);
    c->syscalls++;
    if (fd < 0) {
        c->errors++;
        return;
    }
    if (len && write(fd, buf, len) < 0)
        c->errors++;
    close(fd);
}

/* One watched-file modification that the bench rule matches exactly once: kinds rotate between
 * an open for writing, a chmod and a rename into the watched directory. */
static void watched_modification(const struct opts *o, struct counters *c, int kind)
{
    char path[MAX_PATH], staged[MAX_PATH];
    int n = (int)(c->watched % WATCHED_FILES);
    snprintf(path, sizeof(path), "%s/watched/w%02d.conf", o->root, n);
    switch (kind % 3) {
    case 0:
        write_file(c, path, O_TRUNC, 64);
        break;
    case 1:
        if (chmod(path, 0640 | (c->watched & 1 ? 0004 : 0)) < 0 && errno != ENOENT)
            c->errors++;
        c->syscalls++;
        break;
    default:
        snprintf(staged, sizeof(staged), "%s/staging/w%02d.new", o->root, n);
        write_file(c, staged, O_TRUNC, 64);
        if (rename(staged, path) < 0)
            c->errors++;
        c->syscalls++;
    }
    c->watched++;
}

/* One noise operation. The 64-slot cycle sets the mix: mostly cheap opens (source reads, include
 * probes, system files, cache appends) and, once per cycle, the expensive ext4 work (temp churn with
 * truncate/rename/unlink, an object file rewrite), so the mix reaches ~100k monitored syscalls/s. */
static void noise(const struct opts *o, struct counters *c, uint32_t *rnd)
{
    char a[MAX_PATH], b[MAX_PATH];
    unsigned slot = (unsigned)(c->ops % 64), r = next_rand(rnd);
    if (slot < 42) { /* compiler reading sources and headers */
        read_file(c, tree[r % (unsigned)o->tree_files]);
    } else if (slot < 54) { /* include search miss, like -I path probing */
        snprintf(a, sizeof(a), "%s/tree/include/missing%u.h", o->root, r % 512);
        read_file(c, a);
    } else if (slot < 58) {
        read_file(c, system_files[r % N_SYSTEM_FILES]);
    } else if (slot == 58) { /* temp churn: create, write, rename, unlink */
        snprintf(a, sizeof(a), "%s/cc%u.tmp", o->tmpdir, r % 64);
        snprintf(b, sizeof(b), "%s/cc%u.s", o->tmpdir, r % 64);
        write_file(c, a, O_TRUNC, 512);
        if (rename(a, b) < 0)
            c->errors++;
        if (unlink(b) < 0)
            c->errors++;
        c->syscalls += 2;
    } else if (slot == 59) { /* object file */
        snprintf(a, sizeof(a), "%s/tree/out/obj%u.o", o->root, r % OBJ_FILES);
        write_file(c, a, O_TRUNC, 2048);
    } else { /* cache append */
        snprintf(a, sizeof(a), "%s/cache%u.bin", o->cachedir, r % 16);
        write_file(c, a, O_APPEND, 128);
    }
}

static int load_tree(const struct opts *o)
{
    tree = calloc((size_t)o->tree_files, sizeof(*tree));
    if (!tree)
        return -1;
    for (int i = 0; i < o->tree_files; i++)
        snprintf(tree[i], MAX_PATH, "%s/tree/src/d%02d/f%03d.c", o->root, i / 100, i % 100);
    return 0;
}

static int done(const struct opts *o, const struct counters *c)
{
    if (o->ops && c->ops >= o->ops)
        return 1;
    /* checking the clock every operation would cost more than some operations */
    return o->seconds > 0 && (c->ops & 63) == 0 && now_s() >= o->seconds;
}

int main(int argc, char **argv)
{
    struct opts o = {.root = "/var/tmp/otel-fim-bench", .tmpdir = "/tmp/otel-fim-bench",
                     .cachedir = "/var/cache/otel-fim-bench", .tree_files = 2000};
    struct counters c = {0};
    uint32_t rnd = 12345;
    int opt;

    if (argc < 2) {
        fprintf(stderr, "usage: %s mixed|openloop|wopenloop|repeat|burst [options]\n", argv[0]);
        return 2;
    }
    o.mode = argv[1];
    optind = 2;
    while ((opt = getopt(argc, argv, "n:d:r:w:R:T:C:f:F:")) != -1) {
        switch (opt) {
        case 'n': o.ops = atol(optarg); break;
        case 'd': o.seconds = atof(optarg); break;
        case 'r': o.rate = atof(optarg); break;
        case 'w': o.watched_every = atol(optarg); break;
        case 'R': o.root = optarg; break;
        case 'T': o.tmpdir = optarg; break;
        case 'C': o.cachedir = optarg; break;
        case 'f': o.file = optarg; break;
        case 'F': o.tree_files = atoi(optarg); break;
        default: return 2;
        }
    }
    if (!o.ops && o.seconds <= 0) {
        fprintf(stderr, "workload: give -n or -d\n");
        return 2;
    }
    memset(buf, 'x', sizeof(buf));
    if (strcmp(o.mode, "mixed") == 0 && (o.tree_files <= 0 || load_tree(&o) < 0))
        return 2;
    if ((strcmp(o.mode, "openloop") == 0 || strcmp(o.mode, "wopenloop") == 0) && !o.file) {
        fprintf(stderr, "workload: %s needs -f FILE\n", o.mode);
        return 2;
    }

    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (!done(&o, &c)) {
        if (strcmp(o.mode, "mixed") == 0) {
            noise(&o, &c, &rnd);
            if (o.watched_every && (c.ops + 1) % o.watched_every == 0)
                watched_modification(&o, &c, (int)c.watched);
        } else if (strcmp(o.mode, "openloop") == 0) {
            int fd = open(o.file, O_RDONLY | O_CLOEXEC);
            c.syscalls++;
            if (fd < 0)
                c.errors++;
            else
                close(fd);
        } else if (strcmp(o.mode, "wopenloop") == 0) {
            int fd = open(o.file, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
            c.syscalls++;
            if (fd < 0)
                c.errors++;
            else
                close(fd);
        } else if (strcmp(o.mode, "repeat") == 0) {
            char path[MAX_PATH];
            snprintf(path, sizeof(path), "%s/watched/repeat.conf", o.root);
            int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
            c.syscalls++;
            if (fd < 0)
                c.errors++;
            else
                close(fd);
            c.watched++;
        } else if (strcmp(o.mode, "burst") == 0) {
            char path[MAX_PATH];
            /* distinct files (each one again only after BURST_FILES others: longer than a
             * coalescing window at any rate reached here), so coalescing cannot help */
            snprintf(path, sizeof(path), "%s/watched/b%06ld", o.root, c.ops % BURST_FILES);
            write_file(&c, path, O_TRUNC, 0);
            c.watched++;
        } else {
            fprintf(stderr, "workload: unknown mode %s\n", o.mode);
            return 2;
        }
        c.ops++;
        if ((c.ops % RATE_CHECK_EVERY) == 0)
            pace(&o, c.syscalls);
    }
    double elapsed = now_s();
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double cpu = (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
                 (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
    printf("{\"mode\": \"%s\", \"elapsed_s\": %.6f, \"cpu_s\": %.6f, \"ops\": %ld, "
           "\"syscalls\": %ld, \"watched_writes\": %ld, \"errors\": %ld}\n",
           o.mode, elapsed, cpu, c.ops, c.syscalls, c.watched, c.errors);
    return 0;
}
