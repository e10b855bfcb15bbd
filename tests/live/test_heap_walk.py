"""The read-only heap walk against real targets, checked with gdb's malloc_info() and
malloc_trim(0) in the same processes.

GIVEN a target compiled here with a known heap shape, WHEN memtop walks it through /proc/PID/mem,
THEN its per-arena figures equal malloc_info's and its predicted release equals the VmRSS drop
that a real malloc_trim(0) causes, within one page per arena.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from memtop.heap import analyze
from memtop.heap.memory import TargetMemory
from memtop.procfs import PAGE_SIZE
from tests.heap_targets import HEAP_TARGET, gdb_malloc_info, gdb_trim
from tests.support import IS_ROOT, compile_c

pytestmark = [
    pytest.mark.live,
    pytest.mark.skipif(not IS_ROOT, reason="reading another process's heap needs root (or CAP_SYS_PTRACE)"),
    pytest.mark.skipif(shutil.which("gdb") is None, reason="gdb is missing: run `make test`, which installs it"),
]


@pytest.fixture(scope="module")
def heap_target():
    return compile_c(HEAP_TARGET, name="heap_target")


def assert_matches_malloc_info(report, heaps):
    assert report.valid, report.reason
    assert len(report.arenas) == len(heaps)
    for arena, info in zip(report.arenas, heaps):
        # malloc_info sizes are chunksize_nomask: PREV_INUSE, plus NON_MAIN_ARENA in thread arenas.
        flag_bits = 1 if arena.is_main else 5
        assert arena.system_bytes == info["system"]
        assert arena.fastbin_bytes == info["fast_size"]
        assert arena.fastbin_count == info["fast_count"]
        assert arena.free_count + 1 == info["rest_count"]  # + top
        assert arena.top_bytes + arena.free_bytes + arena.free_count * flag_bits == info["rest_size"]
        glibc_in_use = info["system"] - info["fast_size"] - (info["rest_size"] - arena.free_count * flag_bits)
        assert arena.in_use_bytes == glibc_in_use


def assert_trim_prediction(report, pid):
    before, after = gdb_trim(pid)
    drop = before - after
    assert abs(report.trim_release_bytes - drop) <= PAGE_SIZE * len(report.arenas), (report.trim_release_bytes, drop)
    return drop


def test_pinned_small_chunks_both_symbol_paths(children, heap_target):
    child = children.start([heap_target, "pinned"])
    debug = analyze(child.pid, symbols="debug")
    heuristic = analyze(child.pid, symbols="heuristic")
    assert debug.symbols == "debug" and heuristic.symbols == "heuristic"
    assert debug.arenas == heuristic.arenas  # same heap, found two ways
    assert_matches_malloc_info(debug, gdb_malloc_info(child))
    main = debug.main_arena
    # 60000 freed 208-byte chunks coalesced into one free chunk pinned by the last allocation.
    assert main.free_bytes > 60000 * 200
    pin = debug.pin
    assert pin is not None and pin.size == 208
    assert pin.pinned_bytes >= 60000 * 200
    assert pin.distance_below_top == main.top_bytes
    drop = assert_trim_prediction(debug, child.pid)
    assert drop > 10 << 20  # mtrim releases the free pages below the pin


def test_fastbin_heavy_heap_never_consolidated(children, heap_target):
    child = children.start([heap_target, "fastbins"])
    report = analyze(child.pid)
    assert_matches_malloc_info(report, gdb_malloc_info(child))
    main = report.main_arena
    assert main.fastbin_count > 150_000 and main.free_bytes == 0
    assert main.tcache_count > 0  # the first frees of each size went to the tcache
    # Only consolidating the fastbins first (as malloc_trim does) predicts the real release.
    drop = assert_trim_prediction(report, child.pid)
    assert drop > 8 << 20


def test_thread_arena_with_a_large_top(children, heap_target):
    child = children.start([heap_target, "thread_top"])
    report = analyze(child.pid)
    assert_matches_malloc_info(report, gdb_malloc_info(child))
    assert len(report.arenas) == 2
    thread = next(a for a in report.arenas if not a.is_main)
    assert thread.top_bytes > 20 << 20
    assert thread.top_resident_bytes > 20 << 20  # resident, and malloc_trim keeps it
    assert len(thread.heaps) >= 1 and thread.heaps[0][0] % (64 << 20) == 0
    assert_trim_prediction(report, child.pid)


def test_everything_in_use(children, heap_target):
    child = children.start([heap_target, "inuse"])
    report = analyze(child.pid)
    assert_matches_malloc_info(report, gdb_malloc_info(child))
    main = report.main_arena
    assert main.free_bytes == 0 and main.fastbin_bytes == 0
    assert main.in_use_count >= 100_000
    assert main.trim_release_bytes == 0
    assert_trim_prediction(report, child.pid)


PYTHON_LIST_FREED = r"""
import os, sys
x = [bytes(3000) for _ in range(20000)]   # > 512 bytes: glibc malloc, not obmalloc
pin = bytes(3000)
del x
sys.stdout.write("READY\n"); sys.stdout.flush()
while True:  # os.read: no stdio buffer is allocated after READY
    line = os.read(0, 100)
    if not line or line.startswith(b"quit"):
        break
    os.write(1, b"pong\n")
"""


def test_python_process_after_a_large_list_is_freed(children):
    child = children.start([sys.executable, "-c", PYTHON_LIST_FREED])
    report = analyze(child.pid)
    assert report.runtime.kind == "cpython"
    assert_matches_malloc_info(report, gdb_malloc_info(child))
    assert report.main_arena.free_bytes > 50 << 20
    assert_trim_prediction(report, child.pid)


def test_walk_adds_no_zero_page_mappings(children, heap_target):
    """The thread arena's heap has never-touched pages: reading them through /proc/PID/mem would
    map the zero page; pagemap must show exactly the same present pages after the walk."""
    child = children.start([heap_target, "thread_top"])

    def present_pages():
        with TargetMemory(child.pid) as mem:
            total = 0
            for arena in report.arenas:
                for start, size in arena.heaps:
                    pagemap = mem.pagemap(start, start + (64 << 20))
                    total += pagemap.present_mask().count(1)
            return total

    report = analyze(child.pid)
    before = present_pages()
    for _ in range(3):
        analyze(child.pid)
    assert present_pages() == before


def test_a_process_allocating_all_the_time_is_valid_or_changing(children, heap_target):
    child = children.start([heap_target, "churn"])
    statuses = set()
    for _ in range(3):
        report = analyze(child.pid, retries=2)
        statuses.add(report.status)
        assert report.status in ("valid", "changing"), report.reason
        if report.valid:
            for arena in report.arenas:
                assert arena.in_use_bytes + arena.free_bytes + arena.fastbin_bytes + arena.top_bytes == arena.system_bytes
                assert arena.in_use_bytes >= 0
                if not arena.is_main:
                    assert sum(size for _, size in arena.heaps) == arena.system_bytes
        else:
            assert "changing too fast" in report.reason
            assert report.attempts == 2
    assert child.alive()


CORRUPT = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
static char inbuf[256], outbuf[256];
int main(void) {
    setvbuf(stdout, outbuf, _IOLBF, sizeof outbuf);
    setvbuf(stdin, inbuf, _IOLBF, sizeof inbuf);
    char *a = malloc(40), *b = malloc(40), *c = malloc(40);
    memset(a, 1, 40); memset(b, 2, 40); memset(c, 3, 40);
    /* Overwrite b's size field (the word before b's user pointer) with garbage. */
    ((size_t *)b)[-1] = 0x1234560;
    printf("READY %p\n", (void *)(b - 16));
    char line[64];
    while (fgets(line, sizeof line, stdin)) printf("pong\n");
    return 0;
}
"""


def test_a_corrupt_heap_is_reported_with_the_address(children):
    binary = compile_c(CORRUPT, name="heap_corrupt")
    child = children.start([binary])
    bad_chunk = int(child.ready_line.split()[1], 16)
    report = analyze(child.pid, retries=2)
    assert not report.valid
    assert report.status == "corrupt"
    assert f"0x{bad_chunk:x}" in report.reason


def test_gone_kernel_thread_and_zombie(children):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    assert analyze(gone.pid).status == "gone"
    assert analyze(2).status == "kernel-thread"  # kthreadd
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        from tests.support import wait_until

        wait_until(lambda: open(f"/proc/{zombie.pid}/stat").read().split(")")[1].split()[0] == "Z")
        report = analyze(zombie.pid)
        assert report.status == "zombie" and not report.valid
    finally:
        zombie.wait()


def test_permission_denied_says_what_is_needed(children, heap_target):
    """As an unprivileged user (a forked copy of this test that drops to nobody)."""
    child = children.start([heap_target, "inuse"])
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the forked child
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            report = analyze(child.pid)
            os.write(write_end, f"{report.status}\n{report.reason}\n".encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as f:
        output = f.read()
    os.waitpid(pid, 0)
    status, reason = output.splitlines()[:2]
    assert status == "denied"
    assert "root or CAP_SYS_PTRACE" in reason
