/* A process that shows the layers memtop explains, for screenshots and demos:
 * - the "spike and drain": 200 MiB allocated in small chunks, all freed but one pin near the
 *   top, so glibc keeps the memory resident (malloc_trim would release it);
 * - 8 threads that each allocated and freed in their own arena;
 * - a deleted file in /dev/shm that it keeps open (RAM no `du` shows);
 * - a few loopback sockets.
 * It prints READY first, then grows the heap over ~3 s (the spike), frees it (RSS stays: glibc
 * keeps the pages below the pin), and sleeps until killed. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <fcntl.h>
#include <sys/socket.h>

static void *thread_work(void *arg) {
    size_t n = 2000;
    void **p = malloc(n * sizeof *p);
    for (size_t i = 0; i < n; i++) { p[i] = malloc(4000); memset(p[i], 7, 4000); }
    for (size_t i = 0; i < n; i += 2) free(p[i]);  /* half kept: a fragmented arena */
    pause();
    return NULL;
}

int main(void) {
    printf("READY\n");
    fflush(stdout);
    sleep(2);
    size_t n = (200u << 20) / 1024;
    void **chunks = malloc(n * sizeof *chunks);
    for (size_t i = 0; i < n; i++) {
        chunks[i] = malloc(1000);
        memset(chunks[i], 1, 1000);
        if (i % 20000 == 0) usleep(200000);  /* a spike over ~2 s, visible tick by tick */
    }
    void *pin = malloc(1000);  /* allocated last: near the top of the heap */
    memset(pin, 2, 1000);
    sleep(2);
    for (size_t i = 0; i < n; i++) free(chunks[i]);
    free(chunks);

    pthread_t t[8];
    for (int i = 0; i < 8; i++) pthread_create(&t[i], NULL, thread_work, NULL);

    char path[64];
    snprintf(path, sizeof path, "/dev/shm/memtop-demo-%d", getpid());
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd >= 0) {
        char buf[65536];
        memset(buf, 3, sizeof buf);
        for (int i = 0; i < 256; i++) if (write(fd, buf, sizeof buf) < 0) break;  /* 16 MiB */
        unlink(path);
    }
    int sv[2];
    for (int i = 0; i < 16; i++) socketpair(AF_UNIX, SOCK_STREAM, 0, sv);

    for (;;) pause();
}
