"""The brk heap split into several ``[heap]`` mappings (issue 16 item 5): the census sums them all.

GIVEN a process whose brk heap the kernel shows as more than one VMA (a forked child that grew
brk, as every postgres backend does; a heap with one page mprotect'ed read-only)
THEN the smaps census's brk heap is every [heap] mapping: their sizes and Rss, as an independent
read of /proc/PID/smaps sums them, and the heap walk's main arena lies inside them.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import time

import pytest

from memtop.heap import analyze
from memtop.heap.census import read_census
from tests.support import IS_ROOT, compile_c

pytestmark = [pytest.mark.live]

SPLIT_HEAP = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

static void grow(int blocks)
{
    for (int i = 0; i < blocks; i++) {
        char *p = malloc(1000); /* small blocks: brk, not mmap */
        memset(p, 1, 1000);
    }
}

int main(int argc, char **argv)
{
    const char *how = argc > 1 ? argv[1] : "fork";
    grow(4000); /* ~4 MiB of brk heap in the parent */
    if (strcmp(how, "mprotect") == 0) {
        /* One page in the middle of the heap read-only: the kernel splits the VMA in three. */
        char *middle = (char *)(((unsigned long)sbrk(0) - (2u << 20)) & ~4095ul);
        if (mprotect(middle, 4096, PROT_READ) != 0) { perror("mprotect"); return 1; }
        printf("READY pid=%d\n", getpid());
        fflush(stdout);
    } else {
        pid_t child = fork();
        if (child == 0) {
            /* The child's brk growth cannot merge with the heap VMA inherited from the parent
               (different anon_vma): a second [heap] mapping, as in a postgres backend. */
            grow(8000);
            printf("READY pid=%d\n", getpid());
            fflush(stdout);
            char line[16];
            while (fgets(line, sizeof line, stdin))
                ;
            return 0;
        }
        waitpid(child, NULL, 0);
        return 0;
    }
    char line[16];
    while (fgets(line, sizeof line, stdin))
        ;
    return 0;
}
"""


def heap_lines(pid: int) -> list[tuple[int, int, int]]:
    """(start, end, Rss bytes) of every [heap] mapping, read straight from /proc/PID/smaps."""
    out, current = [], None
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            head = line.split()
            if "-" in head[0] and len(head) >= 5 and ":" not in head[0]:
                current = None
                if line.rstrip().endswith("[heap]"):
                    start, end = (int(x, 16) for x in head[0].split("-"))
                    current = [start, end, 0]
                    out.append(current)
            elif current is not None and head[0] == "Rss:":
                current[2] = int(head[1]) * 1024
    return [tuple(x) for x in out]


@pytest.fixture(scope="module")
def split_heap_binary():
    if shutil.which("gcc") is None:
        pytest.fail("gcc is missing: run `make test`, which installs it as root")
    return compile_c(SPLIT_HEAP, name="split_heap")


@pytest.mark.parametrize("how, at_least", [("fork", 2), ("mprotect", 3)])
def test_census_counts_every_heap_mapping(children, split_heap_binary, how, at_least):
    child = children.start([split_heap_binary, how])
    pid = int(child.ready_line.split("pid=")[1])
    # smaps read before and after the census agree (a page faulted in between, seen once under
    # load, would make the two readings differ by a page: read again then)
    for _ in range(10):
        before = heap_lines(pid)
        census = read_census(pid)
        truth = heap_lines(pid)
        if truth == before:
            break
    assert len(truth) >= at_least, truth  # the kernel did split the heap
    brk = census.brk_heap
    assert brk is not None and brk.mappings == len(truth)
    assert brk.start == truth[0][0]
    assert brk.mapped_bytes == sum(end - start for start, end, _ in truth)
    assert brk.rss_bytes == sum(rss for _, _, rss in truth)
    # more than the first mapping alone: what the census counted before
    assert brk.rss_bytes > truth[0][2] and brk.mapped_bytes > truth[0][1] - truth[0][0]
    if IS_ROOT:
        # the main arena that the heap walk found spans the same heap (system_mem: brk - sbrk_base)
        heap = analyze(pid)
        assert heap.valid, heap.reason
        main = heap.main_arena
        (start, size), = main.heaps
        assert truth[0][0] <= start and start + size <= truth[-1][1]
        assert size <= brk.mapped_bytes


def _pg_bin() -> str:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))
    if not found:
        pytest.fail("PostgreSQL is missing: `make test` installs postgresql (as root)")
    return os.path.dirname(found[-1])


@pytest.mark.skipif(not IS_ROOT, reason="starts postgres as the postgres user (runuser): needs root")
def test_postgres_backend_heap_spans_two_mappings(children):
    bindir = _pg_bin()
    scratch = tempfile.mkdtemp(prefix="memtop-brk-pg-")
    try:
        os.chmod(scratch, 0o755)
        shutil.chown(scratch, "postgres")
        data = os.path.join(scratch, "data")
        subprocess.run(["runuser", "-u", "postgres", "--", f"{bindir}/initdb", "-D", data, "-A", "trust", "--no-sync"],
                       check=True, capture_output=True, timeout=120)
        with open(os.path.join(data, "postgresql.conf"), "a") as conf:
            conf.write(f"\nlisten_addresses = ''\nunix_socket_directories = '{scratch}'\nport = 54322\n")
        children.start(["runuser", "-u", "postgres", "--", f"{bindir}/postgres", "-D", data], ready=False)
        deadline = time.monotonic() + 60
        while not os.path.exists(os.path.join(scratch, ".s.PGSQL.54322")):
            assert time.monotonic() < deadline, "postgres did not start"
            time.sleep(0.1)
        # A backend that sorts in memory (its heap grows by brk) and then waits.
        sql = ["SELECT pg_backend_pid()", "SET work_mem = '64MB'",
               "SELECT count(*) FROM (SELECT md5(g::text) FROM generate_series(1, 200000) g ORDER BY 1) s",
               "SELECT 'sorted'", "SELECT pg_sleep(60)"]
        psql = children.start([shutil.which("psql") or "psql", "-h", scratch, "-p", "54322", "-U", "postgres",
                               "-At", *(arg for query in sql for arg in ("-c", query))], ready=False)
        backend = int(psql.readline(60))
        while psql.readline(60) != "sorted":
            pass
        for _ in range(10):  # smaps before and after the census agree (as above)
            before = heap_lines(backend)
            census = read_census(backend)
            truth = heap_lines(backend)
            if truth == before:
                break
        # Usually two: the heap inherited from the postmaster, and the backend's own growth (seen once
        # under load as one mapping; the forking C target above makes two for certain). Either way
        # the census counts what smaps shows.
        assert len(truth) >= 1, truth
        assert census.brk_heap.mappings == len(truth)
        assert census.brk_heap.rss_bytes == sum(rss for _, _, rss in truth)
        assert census.brk_heap.mapped_bytes == sum(end - start for start, end, _ in truth)
        if len(truth) >= 2:
            assert census.brk_heap.rss_bytes > truth[0][2]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
