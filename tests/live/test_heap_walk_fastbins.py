"""Fastbin lists followed through what the compiled walk noted, against the lists read from the
target, and free chunks kept packed (issue 20, item 4: the walk no longer reads the heap a
second time for its fastbins, nor makes a Python tuple per free chunk).

GIVEN targets started here whose threads fill their arenas with small chunks and free some of
them (so that tcache fills and the rest go to fastbins, or to the bins for bigger chunks), WHEN
memtop walks them with the compiled loop and with the pure-Python one, THEN both reports are
equal, fastbin and free chunks included.
"""

from __future__ import annotations

import pytest

from memtop.heap import analyze, native
from tests.support import IS_ROOT, compile_c

pytestmark = [
    pytest.mark.live,
    pytest.mark.skipif(not IS_ROOT, reason="reading another process's heap needs root (or CAP_SYS_PTRACE)"),
    pytest.mark.skipif(native.follow_fastbins() is None, reason="no native loop (not built, or MEMTOP_PURE_PYTHON)"),
]

# Each thread (its own arena) allocates N chunks of REQUEST..REQUEST+128 bytes and frees one in EVERY,
# in an order that makes each fastbin list jump around its heap; the main thread does the same.
TARGET = r"""
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
static size_t n, every, request;
static pthread_barrier_t ready;
static void fill(unsigned seed) {
    void **v = malloc(n * sizeof(void *));
    for (size_t i = 0; i < n; i++) { v[i] = malloc(request + (rand_r(&seed) % 9) * 16); memset(v[i], 7, 8); }
    for (size_t i = 0; i < n; i += every) free(v[(i * 7919) % n]);
}
static void *thread_main(void *arg) {
    fill((unsigned)(size_t)arg);
    pthread_barrier_wait(&ready);
    pthread_barrier_wait(&ready);  /* never passed: the thread and its arena stay */
    return NULL;
}
int main(int argc, char **argv) {
    n = strtoull(argv[1], 0, 10); every = strtoull(argv[2], 0, 10);
    int threads = atoi(argv[3]); request = strtoull(argv[4], 0, 10);
    pthread_barrier_init(&ready, NULL, threads + 1);
    for (int t = 0; t < threads; t++) { pthread_t th; pthread_create(&th, NULL, thread_main, (void *)(size_t)(t + 1)); }
    fill(99);
    pthread_barrier_wait(&ready);
    printf("READY\n"); fflush(stdout);
    char line[64];
    while (fgets(line, sizeof line, stdin)) { printf("pong\n"); fflush(stdout); }
    return 0;
}
"""


@pytest.mark.parametrize("every", [3, 64])
def test_fastbins_from_the_walk_equal_the_lists_read_from_the_target(children, gcc, every):
    binary = compile_c(TARGET, name="fastbin_target", flags=("-O1", "-pthread"))
    child = children.start([binary, "200000", str(every), "3", "24"])
    native_report = analyze(child.pid)
    python_report = analyze(child.pid, native=False)
    assert native_report.valid, native_report.reason
    assert python_report.valid, python_report.reason
    assert len(native_report.arenas) == 4
    assert sum(a.fastbin_count for a in native_report.arenas) > 1000
    assert native_report.arenas == python_report.arenas
    assert native_report.pin == python_report.pin


def test_many_free_chunks_in_the_bins_are_the_same_for_both_loops(children, gcc):
    # GIVEN chunks of 208..336 bytes (above the fastbins), every other one freed: free chunks
    # that cannot merge, in every arena
    binary = compile_c(TARGET, name="fastbin_target", flags=("-O1", "-pthread"))
    child = children.start([binary, "100000", "2", "3", "200"])
    # WHEN walked by both loops
    native_report = analyze(child.pid)
    python_report = analyze(child.pid, native=False)
    # THEN both find the same free chunks (about 50,000 an arena: tcache holds 7 of each size)
    assert native_report.valid, native_report.reason
    assert all(a.free_count > 40_000 for a in native_report.arenas)
    assert native_report.arenas == python_report.arenas
    assert native_report.pin == python_report.pin


def test_too_many_fastbin_candidates_fall_back_to_reading_the_lists(children, gcc, monkeypatch):
    # GIVEN a target with many fastbin chunks, and room for only a few candidates
    from memtop.heap import walk

    binary = compile_c(TARGET, name="fastbin_target", flags=("-O1", "-pthread"))
    child = children.start([binary, "200000", "3", "3", "24"])
    monkeypatch.setattr(walk, "MAX_CANDIDATE_BYTES", 4096)
    read_lists = []
    real_follow = walk.follow_fastbins
    monkeypatch.setattr(walk, "follow_fastbins", lambda *a: read_lists.append(a) or real_follow(*a))
    # WHEN walked with the compiled loop THEN the lists are read instead, with the same report
    native_report = analyze(child.pid)
    assert read_lists  # the arenas with more candidates than that read their lists
    python_report = analyze(child.pid, native=False)
    assert native_report.valid, native_report.reason
    assert sum(a.fastbin_count for a in native_report.arenas) > 1000
    assert native_report.arenas == python_report.arenas
