/* The arena-explosion target of the Arenas tests (issue 5).
 *
 * A pool of NTHREADS worker threads (default 16) plus the main thread. Each, in turn (never two
 * at once), allocates a burst of BURST_KIB of small blocks (48..1040 bytes), keeps every
 * KEEP_EVERY-th block alive and frees the rest: the pattern of a thread pool that handles one
 * request at a time. With one arena per thread every arena keeps its own burst's pages resident
 * (the live blocks are spread over the whole burst, so free() cannot trim the top); with
 * MALLOC_ARENA_MAX=2 the next burst reuses the free chunks a previous one left behind.
 *
 * Usage: arenas_target [NTHREADS [BURST_KIB [KEEP_EVERY]]]
 * Prints "READY threads=N arenas_hint=..." once every burst is done, then serves stdin:
 *   ping -> pong
 *   quit -> exits
 * Nothing else is written to stdout, so a test can check that memtop writes nothing there.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int nthreads = 16;
static size_t burst_bytes = 3u << 20;
static int keep_every = 32;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t turn_changed = PTHREAD_COND_INITIALIZER;
static int turn = 0; /* whose burst it is: 0 = main thread, k = worker k */
static int done_bursts = 0;
static int quitting = 0;

static void **kept[64];
static size_t kept_count[64];

static void burst(int who)
{
    size_t total = 0, n = 0, cap = 1024;
    void **all = malloc(cap * sizeof *all);
    unsigned seed = 12345u + (unsigned)who * 7919u;
    while (total < burst_bytes) {
        seed = seed * 1103515245u + 12345u;
        size_t size = 48 + ((seed >> 8) % 63) * 16; /* 48 .. 1040 */
        if (n == cap) {
            cap *= 2;
            all = realloc(all, cap * sizeof *all);
        }
        all[n] = malloc(size);
        memset(all[n], 0xab, size); /* touch it: resident, like real data */
        total += size;
        n++;
    }
    size_t live = 0;
    void **keep = malloc((n / keep_every + 1) * sizeof *keep);
    for (size_t i = 0; i < n; i++) {
        if (i % keep_every == keep_every - 1)
            keep[live++] = all[i];
        else
            free(all[i]);
    }
    free(all);
    kept[who] = keep;
    kept_count[who] = live;
}

static void *worker(void *arg)
{
    int me = (int)(long)arg;
    pthread_mutex_lock(&lock);
    while (turn != me)
        pthread_cond_wait(&turn_changed, &lock);
    pthread_mutex_unlock(&lock);

    burst(me); /* the first malloc of this thread attaches it to an arena */

    pthread_mutex_lock(&lock);
    turn++;
    done_bursts++;
    pthread_cond_broadcast(&turn_changed);
    while (!quitting) /* park: the thread stays attached to its arena */
        pthread_cond_wait(&turn_changed, &lock);
    pthread_mutex_unlock(&lock);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc > 1)
        nthreads = atoi(argv[1]);
    if (argc > 2)
        burst_bytes = (size_t)atol(argv[2]) << 10;
    if (argc > 3)
        keep_every = atoi(argv[3]);
    if (nthreads < 1 || nthreads > 63 || keep_every < 1) {
        fprintf(stderr, "usage: %s [NTHREADS<64 [BURST_KIB [KEEP_EVERY]]]\n", argv[0]);
        return 2;
    }
    pthread_t tids[64];
    for (int i = 1; i <= nthreads; i++)
        pthread_create(&tids[i], NULL, worker, (void *)(long)i);

    burst(0);
    pthread_mutex_lock(&lock);
    turn = 1;
    pthread_cond_broadcast(&turn_changed);
    while (done_bursts < nthreads)
        pthread_cond_wait(&turn_changed, &lock);
    pthread_mutex_unlock(&lock);

    printf("READY threads=%d burst=%zu keep_every=%d\n", nthreads, burst_bytes, keep_every);
    fflush(stdout);
    char line[64];
    while (fgets(line, sizeof line, stdin)) {
        if (strncmp(line, "quit", 4) == 0)
            break;
        if (strncmp(line, "ping", 4) == 0) {
            printf("pong\n");
            fflush(stdout);
        }
    }
    pthread_mutex_lock(&lock);
    quitting = 1;
    pthread_cond_broadcast(&turn_changed);
    pthread_mutex_unlock(&lock);
    for (int i = 1; i <= nthreads; i++)
        pthread_join(tids[i], NULL);
    return 0;
}
