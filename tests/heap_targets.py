"""C targets for the heap tests, compiled with gcc during the run (tests.support.compile_c).

`heap_target SCENARIO` sets up its heap, prints READY, then answers commands on stdin:
`ping` -> `pong`, `trim` -> malloc_trim(0) then `trimmed`, `quit` -> exits. The heap stays still while it waits (blocked in read).
"""

HEAP_TARGET = r"""
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void *keep[400000];
static void *volatile pins[4]; /* globals: gcc may not elide a malloc whose result is kept here */

/* Many small chunks, all freed but one allocated last (near the top). */
static void pinned(void) {
    int n = 60000;
    for (int i = 0; i < n; i++) { keep[i] = malloc(200); memset(keep[i], 1, 200); }
    pins[0] = malloc(200);
    memset(pins[0], 2, 200);
    for (int i = 0; i < n; i++) free(keep[i]);
}

/* Fastbin-sized chunks freed and never consolidated (no large malloc after). */
static void fastbins(void) {
    int n = 200000;
    for (int i = 0; i < n; i++) { keep[i] = malloc(24 + 16 * (i % 5)); memset(keep[i], 3, 24); }
    pins[1] = malloc(64);
    memset(pins[1], 4, 64);
    for (int i = 0; i < n; i++) if (i % 2000 != 0) free(keep[i]);
}

/* Everything in use. */
static void inuse(void) {
    for (int i = 0; i < 100000; i++) { keep[i] = malloc(16 + (i % 64) * 8); memset(keep[i], 5, 16); }
}

/* A thread arena whose top stays large: trim threshold raised so free() does not shrink it. */
static void *thread_body(void *arg) {
    (void)arg;
    int n = 24000;
    void **v = malloc(n * sizeof(void *));
    for (int i = 0; i < n; i++) { v[i] = malloc(1000); memset(v[i], 6, 1000); }
    for (int i = n - 1; i >= 0; i--) free(v[i]);
    free(v);
    pins[2] = malloc(5000); /* leaves a small in-use chunk */
    memset(pins[2], 7, 5000);
    return NULL;
}

static void thread_top(void) {
    mallopt(M_TRIM_THRESHOLD, 512 << 20);
    pthread_t t;
    pthread_create(&t, NULL, thread_body, NULL);
    pthread_join(t, NULL);
    for (int i = 0; i < 20000; i++) { keep[i] = malloc(300); memset(keep[i], 8, 300); }
    for (int i = 0; i < 20000; i += 2) free(keep[i]);
}

/* A thread arena that outgrew its first 64 MiB heap: two heaps or more, closed by fenceposts. */
static void *big_body(void *arg) {
    (void)arg;
    int n = 100000;
    void **v = malloc(n * sizeof(void *));
    for (int i = 0; i < n; i++) { v[i] = malloc(1500); memset(v[i], 9, 64); }
    for (int i = 0; i < n; i += 3) free(v[i]);
    return NULL;
}

static void thread_heaps(void) {
    pthread_t t;
    pthread_create(&t, NULL, big_body, NULL);
    pthread_join(t, NULL);
}

/* A free chunk whose pages were never written, only read: each read maps the shared zero page,
 * which pagemap reports present but RSS does not count (and a trim cannot release). */
static void zeropages(void) {
    mallopt(M_MMAP_THRESHOLD, 16 << 20); /* at most 32 MiB is accepted */
    volatile char *big = malloc(8 << 20);
    keep[1] = malloc(300000); /* no free chunk that big: it comes from top, after big */
    memset(keep[1], 1, 100);  /* kept in a global: gcc may not elide it */
    free((void *)big);
    long sum = 0;
    for (long off = 4096; off < (8 << 20) - 4096; off += 4096) sum += big[off];
    keep[0] = (void *)sum;
}

/* Allocating and freeing all the time, in two threads. */
static volatile int stop;
static void *churn_body(void *arg) {
    unsigned seed = (unsigned)(long)arg;
    void *slots[4096] = {0};
    while (!stop) {
        int k = rand_r(&seed) % 4096;
        free(slots[k]);
        slots[k] = malloc(16 + rand_r(&seed) % 3000);
    }
    return NULL;
}

static void churn(void) {
    pthread_t a, b;
    pthread_create(&a, NULL, churn_body, (void *)1L);
    pthread_create(&b, NULL, churn_body, (void *)2L);
    churn_body((void *)3L); /* never returns while running */
}

static char inbuf[4096], outbuf[4096];

int main(int argc, char **argv) {
    /* Static stdio buffers: stdio must not malloc after READY, the heap has to stay still. */
    setvbuf(stdout, outbuf, _IOLBF, sizeof outbuf);
    setvbuf(stdin, inbuf, _IOLBF, sizeof inbuf);
    const char *s = argc > 1 ? argv[1] : "inuse";
    if (!strcmp(s, "pinned")) pinned();
    else if (!strcmp(s, "fastbins")) fastbins();
    else if (!strcmp(s, "inuse")) inuse();
    else if (!strcmp(s, "thread_top")) thread_top();
    else if (!strcmp(s, "thread_heaps")) thread_heaps();
    else if (!strcmp(s, "zeropages")) zeropages();
    else if (!strcmp(s, "churn")) {
        printf("READY\n");
        churn();
    } else { fprintf(stderr, "unknown scenario %s\n", s); return 2; }
    printf("READY\n");
    char line[128];
    while (fgets(line, sizeof line, stdin)) {
        if (!strncmp(line, "quit", 4)) break;
        if (!strncmp(line, "trim", 4)) { malloc_trim(0); printf("trimmed\n"); continue; }
        printf("pong\n");
    }
    return 0;
}
"""


import re
import subprocess
import threading

from memtop.heap.gdb import gdb_path

_GDB_FAST_OPTIONS = ["--batch", "-nx", "-iex", "set debuginfod enabled off", "-iex", "set auto-load off",
            "-iex", "set debug-file-directory /nonexistent"]


def gdb_fast() -> list[str]:
    """gdb for the tests' own truth, fast and quiet: the gdb memtop itself runs (gdb_path: on an
    AMX CPU Debian 12's gdb 13 would leave the targets with unrestored registers)."""
    return [gdb_path(), *_GDB_FAST_OPTIONS]


def gdb_malloc_info(child) -> list[dict]:
    """malloc_info(0, stderr) called by gdb in the target; the XML is read from the target's
    stderr pipe. Returns one dict per <heap>: system, fast_count, fast_size, rest_count, rest_size."""
    chunks = []
    reader = threading.Thread(target=lambda: chunks.append(_read_until(child.proc.stderr, b"</malloc>")), daemon=True)
    reader.start()
    out = subprocess.run(gdb_fast() + ["-p", str(child.pid), "-ex", "call (int)malloc_info(0, *(void**)&stderr)"],
                         capture_output=True, text=True, timeout=60)
    reader.join(30)
    assert chunks, f"no malloc_info output; gdb said: {out.stdout[-500:]} {out.stderr[-500:]}"
    return parse_malloc_info(chunks[0].decode())


def _read_until(stream, marker: bytes) -> bytes:
    import os

    data = b""
    fd = stream.fileno()
    while marker not in data:
        piece = os.read(fd, 65536)
        if not piece:
            break
        data += piece
    return data


def parse_malloc_info(xml: str) -> list[dict]:
    heaps = []
    for body in re.findall(r'<heap nr="\d+">(.*?)</heap>', xml, re.S):
        fast = re.search(r'<total type="fast" count="(\d+)" size="(\d+)"/>', body)
        rest = re.search(r'<total type="rest" count="(\d+)" size="(\d+)"/>', body)
        system = re.search(r'<system type="current" size="(\d+)"/>', body)
        heaps.append({"fast_count": int(fast[1]), "fast_size": int(fast[2]), "rest_count": int(rest[1]),
                      "rest_size": int(rest[2]), "system": int(system[1])})
    return heaps


def gdb_trim(pid: int) -> tuple[int, int]:
    """(VmRSS before, VmRSS after) around malloc_trim(0) called by gdb, both read while gdb is
    attached so that the attach itself is not counted."""
    cmd = f"shell grep VmRSS /proc/{pid}/status"
    out = subprocess.run(gdb_fast() + ["-p", str(pid), "-ex", "call (int)getpid()", "-ex", cmd,
                                     "-ex", "call (int)malloc_trim(0)", "-ex", cmd],
                         capture_output=True, text=True, timeout=60)
    values = [int(v) * 1024 for v in re.findall(r"VmRSS:\s+(\d+) kB", out.stdout)]
    assert len(values) == 2, f"gdb output: {out.stdout[-800:]} {out.stderr[-800:]}"
    return values[0], values[1]
