/* File operations through io_uring only (no open/unlink/... syscall), for the io_uring tests.
 *
 *   uring_ops [--skip-success] [--async] [--sqpoll] OP ARGS...
 *     openat PATH FLAGS_OCTAL     openat2 PATH FLAGS_OCTAL    unlinkat PATH    rmdirat PATH
 *     renameat OLD NEW            mkdirat PATH                linkat OLD NEW   symlinkat TARGET LINK
 *     ftruncate PATH LEN          (PATH opened through io_uring too)
 *     setxattr PATH NAME VALUE    fsetxattr PATH NAME VALUE (PATH opened through io_uring too)
 *     ftruncate-badfd             ftruncate of a descriptor that is not open (fails: EBADF)
 *
 * Prints "res=<cqe res>" per operation; exits 0 when the last one succeeded. --skip-success sets
 * IOSQE_CQE_SKIP_SUCCESS (no completion is posted for a success), --async sets IOSQE_ASYNC,
 * --sqpoll submits through a kernel SQPOLL thread (IORING_SETUP_SQPOLL). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <liburing.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef OP_FTRUNCATE
#define OP_FTRUNCATE 55 /* IORING_OP_FTRUNCATE (6.9); the test passes the kernel's value */
#endif

static struct io_uring ring;
static unsigned sqe_flags;
static unsigned setup_flags;

static struct io_uring_sqe *next_sqe(void)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
    if (!sqe) {
        fprintf(stderr, "no sqe\n");
        exit(2);
    }
    return sqe;
}

/* Submit the prepared SQE and wait for its completion; with --skip-success a success posts none,
 * so a NOP linked after it (run once it is done) is waited for instead. */
static int run(struct io_uring_sqe *sqe)
{
    struct io_uring_cqe *cqe;
    io_uring_sqe_set_flags(sqe, sqe_flags);
    if (sqe_flags & IOSQE_CQE_SKIP_SUCCESS) {
        io_uring_sqe_set_flags(sqe, sqe_flags | IOSQE_IO_LINK);
        io_uring_prep_nop(next_sqe());
    }
    if (io_uring_submit(&ring) < 0) {
        perror("io_uring_submit");
        exit(2);
    }
    if (io_uring_wait_cqe(&ring, &cqe) < 0) {
        perror("io_uring_wait_cqe");
        exit(2);
    }
    int res = cqe->res;
    io_uring_cqe_seen(&ring, cqe);
    if (sqe_flags & IOSQE_CQE_SKIP_SUCCESS)
        res = 0; /* the NOP's completion: the operation succeeded or posted its error first */
    printf("res=%d\n", res);
    fflush(stdout);
    return res;
}

static int open_path(const char *path, int flags)
{
    struct io_uring_sqe *sqe = next_sqe();
    io_uring_prep_openat(sqe, AT_FDCWD, path, flags, 0644);
    return run(sqe);
}

int main(int argc, char **argv)
{
    int i = 1;
    for (; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
        if (!strcmp(argv[i], "--skip-success"))
            sqe_flags |= IOSQE_CQE_SKIP_SUCCESS;
        else if (!strcmp(argv[i], "--async"))
            sqe_flags |= IOSQE_ASYNC;
        else if (!strcmp(argv[i], "--sqpoll"))
            setup_flags |= IORING_SETUP_SQPOLL;
    }
    if (i >= argc) {
        fprintf(stderr, "usage: %s [--skip-success] [--async] OP ARGS...\n", argv[0]);
        return 2;
    }
    if (io_uring_queue_init(8, &ring, setup_flags) < 0) {
        perror("io_uring_queue_init");
        return 2;
    }
    const char *op = argv[i];
    char **a = &argv[i + 1];
    int res;
    struct io_uring_sqe *sqe = NULL;
    if (!strcmp(op, "openat")) {
        res = open_path(a[0], (int)strtol(a[1], NULL, 8));
    } else if (!strcmp(op, "openat2")) {
        struct open_how how = {.flags = (unsigned long long)strtol(a[1], NULL, 8)};
        if (how.flags & O_CREAT)
            how.mode = 0644; /* openat2 refuses a mode without O_CREAT */
        sqe = next_sqe();
        io_uring_prep_openat2(sqe, AT_FDCWD, a[0], &how);
        res = run(sqe);
    } else if (!strcmp(op, "unlinkat") || !strcmp(op, "rmdirat")) {
        sqe = next_sqe();
        io_uring_prep_unlinkat(sqe, AT_FDCWD, a[0], op[0] == 'r' ? AT_REMOVEDIR : 0);
        res = run(sqe);
    } else if (!strcmp(op, "renameat")) {
        sqe = next_sqe();
        io_uring_prep_renameat(sqe, AT_FDCWD, a[0], AT_FDCWD, a[1], 0);
        res = run(sqe);
    } else if (!strcmp(op, "mkdirat")) {
        sqe = next_sqe();
        io_uring_prep_mkdirat(sqe, AT_FDCWD, a[0], 0755);
        res = run(sqe);
    } else if (!strcmp(op, "linkat")) {
        sqe = next_sqe();
        io_uring_prep_linkat(sqe, AT_FDCWD, a[0], AT_FDCWD, a[1], 0);
        res = run(sqe);
    } else if (!strcmp(op, "symlinkat")) {
        sqe = next_sqe();
        io_uring_prep_symlinkat(sqe, a[0], AT_FDCWD, a[1]);
        res = run(sqe);
    } else if (!strcmp(op, "ftruncate")) {
        unsigned saved = sqe_flags;
        sqe_flags = 0;
        int fd = open_path(a[0], O_WRONLY);
        sqe_flags = saved;
        if (fd < 0)
            return 1;
        sqe = next_sqe();
        io_uring_prep_rw(OP_FTRUNCATE, sqe, fd, NULL, 0, strtoull(a[1], NULL, 10));
        res = run(sqe);
    } else if (!strcmp(op, "ftruncate-badfd")) {
        sqe = next_sqe();
        io_uring_prep_rw(OP_FTRUNCATE, sqe, 999, NULL, 0, 0);
        res = run(sqe);
    } else if (!strcmp(op, "setxattr")) {
        sqe = next_sqe();
        io_uring_prep_setxattr(sqe, a[1], a[2], a[0], 0, strlen(a[2]));
        res = run(sqe);
    } else if (!strcmp(op, "fsetxattr")) {
        unsigned saved = sqe_flags;
        sqe_flags = 0;
        int fd = open_path(a[0], O_WRONLY);
        sqe_flags = saved;
        if (fd < 0)
            return 1;
        sqe = next_sqe();
        io_uring_prep_fsetxattr(sqe, fd, a[1], a[2], 0, strlen(a[2]));
        res = run(sqe);
    } else {
        fprintf(stderr, "unknown op %s\n", op);
        return 2;
    }
    io_uring_queue_exit(&ring);
    return res < 0;
}
