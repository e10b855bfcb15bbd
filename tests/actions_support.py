"""C targets for the actions tests and the trim benchmark.

``target MIB [ticker] [arena]``: allocates MIB MiB in 1000-byte chunks, frees all but the
last one (the pin, which keeps the main heap's top from shrinking), prints ``READY <arena>`` and
answers commands on stdin (the main thread is parked in read(2) between them):

- ``ping`` -> ``pong``
- ``gap`` -> the longest time (µs) the ``ticker`` thread went without running since the last
  ``gap``: how long the process was really stopped (the ticker wakes every millisecond)
- ``hold S`` -> the ``arena`` thread takes its arena's mutex (glibc's lll_lock protocol on the
  int at malloc_state offset 0) and keeps it for S seconds; answers ``holding`` once held
- ``selflock`` / ``unlock`` -> the main thread itself takes / releases that arena's mutex (so
  the thread parked in read(2) is the one holding it)
- ``amalloc`` -> the arena thread calls malloc (after ``selflock`` it blocks inside malloc, on
  the arena lock), answers ``requested``
- ``alloc MIB`` -> allocate and touch MIB MiB more (kept), answers ``allocated``
- ``spike MIB`` -> the same spike and drain again (a new pin), answers ``spiked``
"""

from __future__ import annotations

from tests.support import compile_c

TARGET_SOURCE = r"""
#define _GNU_SOURCE
#include <linux/futex.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define HEAP_MAX (64UL * 1024 * 1024) /* glibc HEAP_MAX_SIZE on 64-bit */

static volatile long max_gap_ns;
static int *arena_mutex; /* the arena thread's malloc_state->mutex */
static volatile int hold_seconds;
static volatile int malloc_request;
static pthread_mutex_t cmd_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cmd_cond = PTHREAD_COND_INITIALIZER;
static volatile int holding;

static long ns(struct timespec t) { return t.tv_sec * 1000000000L + t.tv_nsec; }

static void *ticker(void *unused) {
    struct timespec prev, now, one_ms = {0, 1000000};
    clock_gettime(CLOCK_MONOTONIC, &prev);
    for (;;) {
        nanosleep(&one_ms, NULL);
        clock_gettime(CLOCK_MONOTONIC, &now);
        long gap = ns(now) - ns(prev);
        if (gap > max_gap_ns) max_gap_ns = gap;
        prev = now;
    }
    return NULL;
}

/* glibc's low-level lock (sysdeps/nptl/lowlevellock.h): 0 free, 1 locked, 2 locked with waiters */
static void lll_lock(int *m) {
    int c = 0;
    if (__atomic_compare_exchange_n(m, &c, 1, 0, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED)) return;
    while (__atomic_exchange_n(m, 2, __ATOMIC_ACQUIRE) != 0)
        syscall(SYS_futex, m, FUTEX_WAIT_PRIVATE, 2, NULL, NULL, 0);
}

static void lll_unlock(int *m) {
    if (__atomic_exchange_n(m, 0, __ATOMIC_RELEASE) > 1)
        syscall(SYS_futex, m, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

static void *arena_thread(void *unused) {
    char *p = malloc(100); /* a new thread's first malloc creates a new arena */
    memset(p, 1, 100);
    arena_mutex = *(int **)((uintptr_t)p & ~(HEAP_MAX - 1)); /* heap_info.ar_ptr */
    pthread_mutex_lock(&cmd_lock);
    for (;;) {
        while (hold_seconds == 0 && malloc_request == 0) pthread_cond_wait(&cmd_cond, &cmd_lock);
        if (malloc_request) {
            malloc_request = 0;
            pthread_mutex_unlock(&cmd_lock);
            memset(malloc(200), 2, 200); /* blocks inside malloc while the arena is locked */
            pthread_mutex_lock(&cmd_lock);
            continue;
        }
        int s = hold_seconds;
        hold_seconds = 0;
        pthread_mutex_unlock(&cmd_lock);
        lll_lock(arena_mutex);
        holding = 1;
        sleep(s);
        holding = 0;
        lll_unlock(arena_mutex);
        pthread_mutex_lock(&cmd_lock);
    }
    return NULL;
}

int main(int argc, char **argv) {
    size_t mib = argc > 1 ? strtoul(argv[1], NULL, 10) : 0;
    pthread_t t;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "ticker")) pthread_create(&t, NULL, ticker, NULL);
        if (!strcmp(argv[i], "arena")) pthread_create(&t, NULL, arena_thread, NULL);
    }
    size_t n = mib * 1024 * 1024 / 1000;
    if (n) {
        char **v = malloc(n * sizeof *v);
        for (size_t i = 0; i < n; i++) { v[i] = malloc(1000); memset(v[i], 7, 1000); }
        for (size_t i = 0; i + 1 < n; i++) free(v[i]); /* v[n-1] stays: the pin */
        free(v);
    }
    for (int i = 0; i < 200 && arena_mutex == NULL; i++) usleep(5000);
    printf("READY %p\n", (void *)arena_mutex);
    fflush(stdout);
    char line[256];
    while (fgets(line, sizeof line, stdin)) {
        if (!strncmp(line, "ping", 4)) printf("pong\n");
        else if (!strncmp(line, "gap", 3)) { printf("%ld\n", max_gap_ns / 1000); max_gap_ns = 0; }
        else if (!strncmp(line, "hold ", 5)) {
            pthread_mutex_lock(&cmd_lock);
            hold_seconds = atoi(line + 5);
            pthread_cond_signal(&cmd_cond);
            pthread_mutex_unlock(&cmd_lock);
            while (!holding) usleep(1000);
            printf("holding\n");
        } else if (!strncmp(line, "amalloc", 7)) {
            pthread_mutex_lock(&cmd_lock);
            malloc_request = 1;
            pthread_cond_signal(&cmd_cond);
            pthread_mutex_unlock(&cmd_lock);
            printf("requested\n");
        } else if (!strncmp(line, "selflock", 8)) { lll_lock(arena_mutex); printf("locked\n"); }
        else if (!strncmp(line, "unlock", 6)) { lll_unlock(arena_mutex); printf("unlocked\n"); }
        else if (!strncmp(line, "spike ", 6)) {
            size_t m = strtoul(line + 6, NULL, 10) * 1024 * 1024 / 1000;
            char **v = malloc(m * sizeof *v);
            for (size_t i = 0; i < m; i++) { v[i] = malloc(1000); memset(v[i], 5, 1000); }
            for (size_t i = 0; i + 1 < m; i++) free(v[i]);
            free(v);
            printf("spiked\n");
        } else if (!strncmp(line, "alloc ", 6)) {
            size_t m = strtoul(line + 6, NULL, 10) * 1024 * 1024 / 1000;
            for (size_t i = 0; i < m; i++) memset(malloc(1000), 3, 1000);
            printf("allocated\n");
        } else printf("?\n");
        fflush(stdout);
    }
    return 0;
}
"""


def target_binary(*, static: bool = False):
    """The target, compiled with gcc in this run (cached by content)."""
    flags = ("-O1", "-g", "-pthread") + (("-static",) if static else ())
    return compile_c(TARGET_SOURCE, name="actions-target" + ("-static" if static else ""), flags=flags)


def arena_address(ready_line: str) -> int:
    """The arena thread's malloc_state address from the READY line."""
    return int(ready_line.split()[1], 16)
