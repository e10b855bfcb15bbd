/* The MALLOC_ARENA_MAX=2 target (issue 16 item 5): N threads serve "requests", then idle.
 *
 * A request allocates REQ_KIB of blocks (16..1040 bytes, SMALL_PCT % of them fastbin-sized), touches
 * them, keeps every KEEP_EVERY-th one for good (long-lived data, spread over the request's span)
 * and frees the rest in an interleaved order (so that small chunks overflow the tcache into the
 * fastbins, as a garbage collector's sweep does). Each thread serves ROUNDS requests.
 *
 * MODE says how the threads' requests overlap in time, which decides what one arena per thread
 * costs against two shared arenas:
 *   turns     one request at a time in the whole process (a token passes round the threads):
 *             a later request reuses what an earlier one freed, wherever the arenas are shared
 *   together  every thread's request is in flight at the same moment (a barrier before the frees):
 *             peaks add up whatever the arenas
 *   free      no coordination (the scheduler decides)
 *
 * Usage: arena_cap_target NTHREADS ROUNDS REQ_KIB KEEP_EVERY MODE [SMALL_PCT (default 25)]
 * Prints "READY threads=N" once every request is done, then serves stdin:
 *   ping -> pong;  quit -> exits.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

static int nthreads = 16, rounds = 4, keep_every = 16;
static unsigned small_pct = 25;
static size_t request_bytes = 4u << 20;
static enum { TURNS, TOGETHER, FREE } mode = TURNS;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t changed = PTHREAD_COND_INITIALIZER;
static int turn = 0;           /* TURNS: whose request it is (0..nthreads-1) */
static int done = 0, quitting = 0;
static pthread_barrier_t allocated, freed;

static void request(int me, int round, void ***kept, size_t *nkept, size_t *capkept)
{
    /* The request's list of blocks lives outside malloc: freeing a large chunk (>= 64 KiB) would
       consolidate the fastbins (malloc.c _int_free), and they are part of what is measured. */
    size_t total = 0, n = 0, cap = request_bytes / 16 + 1;
    void **all = mmap(NULL, cap * sizeof *all, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (all == MAP_FAILED)
        abort();
    unsigned seed = 2654435761u * (unsigned)(me + 1) + 40503u * (unsigned)round;
    while (total < request_bytes) {
        seed = seed * 1103515245u + 12345u;
        unsigned r = seed >> 8;
        size_t size = r % 100 < small_pct ? 16 + (r >> 7) % 7 * 16 /* 16..112: fastbin sizes */
                                          : 48 + (r >> 7) % 63 * 16; /* 48..1040 */
        all[n] = malloc(size);
        memset(all[n], 0x5a, size);
        total += size;
        n++;
    }
    if (mode == TOGETHER)
        pthread_barrier_wait(&allocated);
    /* Keep every keep_every-th block; free the others, odd indices first (interleaved). */
    for (int pass = 1; pass >= 0; pass--) {
        for (size_t i = (size_t)pass; i < n; i += 2) {
            if (i % (size_t)keep_every == (size_t)keep_every - 1) {
                if (pass == 1) {
                    if (*nkept == *capkept) {
                        *capkept = *capkept ? *capkept * 2 : 1024;
                        *kept = realloc(*kept, *capkept * sizeof **kept);
                    }
                    (*kept)[(*nkept)++] = all[i];
                }
                continue;
            }
            free(all[i]);
        }
    }
    munmap(all, cap * sizeof *all);
    if (mode == TOGETHER)
        pthread_barrier_wait(&freed);
}

static void *worker(void *arg)
{
    int me = (int)(long)arg;
    void **kept = NULL;
    size_t nkept = 0, capkept = 0;
    for (int round = 0; round < rounds; round++) {
        if (mode == TURNS) {
            pthread_mutex_lock(&lock);
            while (turn != me)
                pthread_cond_wait(&changed, &lock);
            pthread_mutex_unlock(&lock);
        }
        request(me, round, &kept, &nkept, &capkept);
        if (mode == TURNS) {
            pthread_mutex_lock(&lock);
            turn = (turn + 1) % nthreads;
            pthread_cond_broadcast(&changed);
            pthread_mutex_unlock(&lock);
        }
    }
    pthread_mutex_lock(&lock);
    done++;
    pthread_cond_broadcast(&changed);
    while (!quitting) /* park: the thread stays attached to its arena, its data stays live */
        pthread_cond_wait(&changed, &lock);
    pthread_mutex_unlock(&lock);
    return kept;
}

int main(int argc, char **argv)
{
    if (argc != 6 && argc != 7) {
        fprintf(stderr, "usage: %s NTHREADS ROUNDS REQ_KIB KEEP_EVERY turns|together|free [SMALL_PCT]\n", argv[0]);
        return 2;
    }
    nthreads = atoi(argv[1]);
    rounds = atoi(argv[2]);
    request_bytes = (size_t)atol(argv[3]) << 10;
    keep_every = atoi(argv[4]);
    if (strcmp(argv[5], "together") == 0)
        mode = TOGETHER;
    else if (strcmp(argv[5], "free") == 0)
        mode = FREE;
    else if (strcmp(argv[5], "turns") != 0)
        return 2;
    if (argc == 7)
        small_pct = (unsigned)atoi(argv[6]);
    if (small_pct > 100 || nthreads < 1 || nthreads > 256 || rounds < 1 || keep_every < 2)
        return 2;
    pthread_barrier_init(&allocated, NULL, (unsigned)nthreads);
    pthread_barrier_init(&freed, NULL, (unsigned)nthreads);
    pthread_t *tids = calloc((size_t)nthreads, sizeof *tids);
    for (int i = 0; i < nthreads; i++)
        pthread_create(&tids[i], NULL, worker, (void *)(long)i);
    pthread_mutex_lock(&lock);
    while (done < nthreads)
        pthread_cond_wait(&changed, &lock);
    pthread_mutex_unlock(&lock);

    printf("READY threads=%d\n", nthreads);
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
    pthread_cond_broadcast(&changed);
    pthread_mutex_unlock(&lock);
    for (int i = 0; i < nthreads; i++)
        pthread_join(tids[i], NULL);
    return 0;
}
