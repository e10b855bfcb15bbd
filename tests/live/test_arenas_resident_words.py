"""The Layers' thread-arena finding speaks of resident memory (issue 16 item 5).

On mariadbd it said "the 15 thread arenas hold 800 MiB" where 800 MiB was system_mem (what glibc
took from the kernel) and 191 MiB was resident. GIVEN six threads whose arenas each keep 12 MiB of
touched, fragmented memory and a 24 MiB free chunk that was never touched, THEN the finding names
the resident bytes (held against the smaps Rss of the arena heaps) and says the system bytes
beside them (held against glibc's own malloc_info, through gdb).
"""

from __future__ import annotations

import shutil

import pytest

from memtop.collect.layers import explain
from memtop.format import fmt_bytes
from memtop.heap.gdb import fetch_malloc_info
from memtop.heap.malloc_info import parse_malloc_info
from memtop.procfs import PAGE_SIZE
from memtop.procfs.process import read_stat
from memtop.model.process import ProcessIdentity
from tests.support import IS_ROOT, compile_c

pytestmark = [
    pytest.mark.live,
    pytest.mark.skipif(not IS_ROOT, reason="reading another process's heap needs root (or CAP_SYS_PTRACE)"),
]

THREADS = 6
MiB = 1 << 20

MAPPED_NOT_RESIDENT = r"""
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t changed = PTHREAD_COND_INITIALIZER;
static int done = 0, quitting = 0;

static void *worker(void *arg)
{
    (void)arg;
    /* 12 MiB of 1000-byte blocks, touched; one in 16 kept: resident, fragmented. */
    enum { SMALL = 12 * 1024 };
    static __thread void *small[SMALL];
    for (int i = 0; i < SMALL; i++) {
        small[i] = malloc(1000);
        memset(small[i], 7, 1000);
    }
    for (int i = 0; i < SMALL; i++)
        if (i % 16 != 15)
            free(small[i]);
    /* 24 MiB of 96 KiB blocks (below the mmap threshold: from the arena), never touched, freed
       below a live pin: system_mem grows, RSS does not. */
    enum { BIG = 256 };
    void *big[BIG];
    for (int i = 0; i < BIG; i++)
        big[i] = malloc(96 * 1024);
    void *pin = malloc(32 * 1024); /* larger than any free run below: it comes from top */
    memset(pin, 1, 32 * 1024);
    for (int i = 0; i < BIG; i++)
        free(big[i]);
    pthread_mutex_lock(&lock);
    done++;
    pthread_cond_broadcast(&changed);
    while (!quitting)
        pthread_cond_wait(&changed, &lock);
    pthread_mutex_unlock(&lock);
    return pin;
}

int main(void)
{
    pthread_t tids[THREADS];
    for (int i = 0; i < THREADS; i++)
        pthread_create(&tids[i], NULL, worker, NULL);
    pthread_mutex_lock(&lock);
    while (done < THREADS)
        pthread_cond_wait(&changed, &lock);
    pthread_mutex_unlock(&lock);
    printf("READY\n");
    fflush(stdout);
    char line[16];
    while (fgets(line, sizeof line, stdin))
        ;
    return 0;
}
""".replace("THREADS", str(THREADS))


def arena_heap_rss(pid: int, heaps: list[tuple[int, int]]) -> int:
    """Rss of the smaps mappings that overlap the given heaps, read straight from /proc/PID/smaps."""
    total, inside = 0, False
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            head = line.split()
            if "-" in head[0] and ":" not in head[0]:
                start, end = (int(x, 16) for x in head[0].split("-"))
                inside = any(start < h + size and end > h for h, size in heaps)
            elif inside and head[0] == "Rss:":
                total += int(head[1]) * 1024
    return total


def test_thread_arena_finding_says_resident_and_system_bytes(children):
    if shutil.which("gdb") is None:
        pytest.fail("gdb is missing: run `make test`, which installs it as root")
    child = children.start([compile_c(MAPPED_NOT_RESIDENT, name="mapped_not_resident")])
    report = explain(child.pid)
    heap = report.heap
    assert heap is not None and heap.valid, heap.reason if heap else None
    threads = [a for a in heap.arenas if not a.is_main]
    assert len(threads) == THREADS
    resident = sum(a.resident_bytes for a in threads)
    system = sum(a.system_bytes for a in threads)
    in_use = sum(a.in_use_bytes for a in threads)
    # the independent truths: smaps Rss of the heaps' mappings, and glibc's own system_mem
    rss = arena_heap_rss(child.pid, [h for a in threads for h in a.heaps])
    assert abs(rss - resident) <= THREADS * 2 * PAGE_SIZE, (rss, resident)
    identity = ProcessIdentity(child.pid, read_stat(child.pid).start_ticks)
    info = parse_malloc_info(fetch_malloc_info(identity, 20.0, mutex_addresses=[a.address for a in heap.arenas]))
    assert abs(sum(a.system_current for a in info.arenas[1:]) - system) <= THREADS * PAGE_SIZE
    # the case of the issue: far more system bytes than resident ones
    assert system > 2.5 * resident and resident >= 32 * MiB
    finding = next(f for f in report.findings if "(arena fragmentation)" in f.text)
    assert f"hold {fmt_bytes(resident)} resident ({fmt_bytes(system)} obtained from the kernel)" in finding.text
    assert f"for {fmt_bytes(in_use)} in use" in finding.text
