/* io_uring load for bench/io_uring_cost.py.
 *
 *   uring_load nops N          N IORING_OP_NOP requests, 64 per submission
 *   uring_load opens N PATH    N IORING_OP_OPENAT (O_WRONLY) of PATH, each fd closed by close(2)
 *
 * Every io_uring completion on the host passes the sensor's io_uring_complete program; file
 * operations also its submission program and the kernel chain. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <liburing.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BATCH 64

static void reap(struct io_uring *ring, unsigned n, int close_fds)
{
    for (unsigned i = 0; i < n; i++) {
        struct io_uring_cqe *cqe;
        if (io_uring_wait_cqe(ring, &cqe) < 0) {
            perror("io_uring_wait_cqe");
            exit(2);
        }
        if (close_fds && cqe->res >= 0)
            close(cqe->res);
        io_uring_cqe_seen(ring, cqe);
    }
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s nops N | opens N PATH\n", argv[0]);
        return 2;
    }
    struct io_uring ring;
    if (io_uring_queue_init(BATCH, &ring, 0) < 0) {
        perror("io_uring_queue_init");
        return 2;
    }
    long total = strtol(argv[2], NULL, 10);
    int opens = !strcmp(argv[1], "opens");
    if (opens && argc < 4)
        return 2;
    for (long done = 0; done < total;) {
        unsigned n = total - done < BATCH ? (unsigned)(total - done) : BATCH;
        for (unsigned i = 0; i < n; i++) {
            struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
            if (opens)
                io_uring_prep_openat(sqe, AT_FDCWD, argv[3], O_WRONLY, 0);
            else
                io_uring_prep_nop(sqe);
        }
        io_uring_submit(&ring);
        reap(&ring, n, opens);
        done += n;
    }
    io_uring_queue_exit(&ring);
    return 0;
}
