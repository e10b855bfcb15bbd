"""C programs the tmpfs tests start: they hold shared memory of every kind memtop reports."""

from __future__ import annotations

# argv: PATH (a file to create in a tmpfs, write, map, then unlink: deleted but open and mapped)
#       FILE_BYTES MEMFD_BYTES SHARED_ANON_BYTES SYSV_BYTES
# prints: READY shmid=N memfd_fd=N deleted_fd=N
# then answers "ping" with "pong" until stdin closes.
HOLDER_C = r"""
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/ipc.h>
#include <sys/shm.h>

static void fill(int fd, size_t bytes) {
    char buf[65536];
    memset(buf, 'x', sizeof buf);
    while (bytes > 0) {
        size_t n = bytes < sizeof buf ? bytes : sizeof buf;
        if (write(fd, buf, n) != (ssize_t)n) { perror("write"); exit(1); }
        bytes -= n;
    }
}

int main(int argc, char **argv) {
    if (argc != 6) { fprintf(stderr, "usage\n"); return 2; }
    size_t file_bytes = strtoull(argv[2], 0, 10), memfd_bytes = strtoull(argv[3], 0, 10);
    size_t anon_bytes = strtoull(argv[4], 0, 10), sysv_bytes = strtoull(argv[5], 0, 10);

    int dfd = open(argv[1], O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (dfd < 0) { perror("open"); return 1; }
    fill(dfd, file_bytes);
    void *dmap = mmap(0, file_bytes, PROT_READ, MAP_SHARED, dfd, 0);
    if (dmap == MAP_FAILED) { perror("mmap file"); return 1; }
    if (unlink(argv[1])) { perror("unlink"); return 1; }

    int mfd = memfd_create("memtop-test", 0);
    if (mfd < 0) { perror("memfd_create"); return 1; }
    if (ftruncate(mfd, memfd_bytes)) { perror("ftruncate"); return 1; }
    char *mmap_memfd = mmap(0, memfd_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
    if (mmap_memfd == MAP_FAILED) { perror("mmap memfd"); return 1; }
    memset(mmap_memfd, 'm', memfd_bytes);

    char *anon = mmap(0, anon_bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (anon == MAP_FAILED) { perror("mmap anon"); return 1; }
    memset(anon, 'a', anon_bytes);

    int shmid = shmget(IPC_PRIVATE, sysv_bytes, IPC_CREAT | 0600);
    if (shmid < 0) { perror("shmget"); return 1; }
    char *seg = shmat(shmid, 0, 0);
    if (seg == (void *)-1) { perror("shmat"); return 1; }
    memset(seg, 's', sysv_bytes);
    /* Marked for removal now: the segment lives while attached, and vanishes when we exit,
       so a killed test leaves nothing behind. */
    shmctl(shmid, IPC_RMID, 0);

    printf("READY shmid=%d memfd_fd=%d deleted_fd=%d\n", shmid, mfd, dfd);
    fflush(stdout);
    char line[256];
    while (fgets(line, sizeof line, stdin)) { printf("pong\n"); fflush(stdout); }
    return 0;
}
"""
