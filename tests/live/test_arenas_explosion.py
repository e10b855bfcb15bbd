"""The arena-explosion target, live: 16 threads that allocate and free in turn.

GIVEN the target run twice, once as is and once under MALLOC_ARENA_MAX=2,
THEN memtop's arena count and per-arena system bytes equal glibc's own malloc_info (fetched
through gdb with open_memstream, nothing written to the target's stdout), and the RSS saving
memtop predicts from the first run's walk for threads that take turns (this target's pattern)
matches the measured RSS difference of the two runs.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from memtop.heap.arena_advice import analyze_arenas
from memtop.heap.gdb import fetch_malloc_info
from memtop.heap.malloc_info import parse_malloc_info
from memtop.model.findings import Severity
from memtop.model.process import ProcessIdentity
from memtop.procfs import PAGE_SIZE
from tests.support import IS_ROOT, compile_c, status_kb

pytestmark = [
    pytest.mark.live,
    pytest.mark.root,
    pytest.mark.skipif(not IS_ROOT, reason="the heap walk reads /proc/PID/mem: needs root (or CAP_SYS_PTRACE)"),
]

SOURCE = (Path(__file__).resolve().parent / "arenas_target.c").read_text()
THREADS = 16


@pytest.fixture(scope="module")
def target_binary():
    if shutil.which("gcc") is None:
        pytest.fail("gcc is missing: run `make test`, which installs it as root")
    return compile_c(SOURCE, name="arenas16")


def _start(children, binary, **env_extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "GLIBC_TUNABLES"))}
    env.update(env_extra)
    child = children.start([binary, str(THREADS)], env=env)
    assert child.ready_line.startswith(f"READY threads={THREADS}")
    return child


def _identity(pid: int) -> ProcessIdentity:
    from memtop.procfs.process import read_stat

    return ProcessIdentity(pid, read_stat(pid).start_ticks)


def test_arena_count_and_system_bytes_equal_malloc_info(children, target_binary):
    if shutil.which("gdb") is None:
        pytest.fail("gdb is missing: run `make test`, which installs it as root")
    child = _start(children, target_binary)
    analysis = analyze_arenas(child.pid)
    heap = analysis.heap
    assert heap is not None and heap.valid, analysis.heap_reason
    info = parse_malloc_info(fetch_malloc_info(_identity(child.pid), 20.0,
                                               mutex_addresses=[a.address for a in heap.arenas]))
    # the arena count (17 threads, cap 8 x CPUs) equals malloc_info's
    assert len(heap.arenas) == len(info.arenas)
    cpus = analysis.cap.cpus
    assert len(heap.arenas) == min(THREADS + 1, max(9, 8 * cpus))
    assert analysis.cap.limit == max(9, 8 * cpus)
    # per arena, in the same order (both follow main_arena.next), system bytes within a page
    for walked, mi in zip(heap.arenas, info.arenas):
        assert abs(walked.system_bytes - mi.system_current) <= PAGE_SIZE, (walked, mi)
    # free in bins + top too (glibc's "rest" includes top, and counts the flag bits: one byte per
    # chunk at most), except in the one arena where the gdb calls themselves allocated
    # (open_memstream's growing buffer, in the calling thread's arena)
    differing = [i for i, (walked, mi) in enumerate(zip(heap.arenas, info.arenas))
                 if not 0 <= mi.rest_bytes - (walked.free_bytes + walked.top_bytes) <= mi.rest_count]
    assert len(differing) <= 1, differing
    assert heap.arenas[0].is_main and not any(a.is_main for a in heap.arenas[1:])
    # the census (smaps only) sees one 64 MiB-aligned heap per thread arena here
    assert analysis.census is not None and analysis.census.allocator == "glibc"
    assert len(analysis.census.arena_heaps) == sum(len(a.heaps) for a in heap.arenas[1:])
    assert analysis.census.thread_stacks.count == THREADS
    # and the target wrote nothing to its stdout: the next line it prints is the answer to ping
    assert child.ask("ping") == "pong"


def test_predicted_turns_saving_matches_malloc_arena_max_2(children, target_binary, record_property):
    many = _start(children, target_binary)
    analysis = analyze_arenas(many.pid, census=False)
    assert analysis.heap is not None and analysis.heap.valid, analysis.heap_reason
    prediction = analysis.prediction
    warning = [f for f in analysis.findings if f.severity == Severity.WARNING]
    assert warning and "Arena explosion" in warning[0].text
    assert analysis.setting_line is not None and analysis.setting_line.startswith("MALLOC_ARENA_MAX=2 ")
    assert warning[0].next_step.endswith(analysis.setting_line)
    rss_many = status_kb(many.pid, "VmRSS")
    many.close()

    two = _start(children, target_binary, MALLOC_ARENA_MAX="2")
    capped = analyze_arenas(two.pid, census=False)
    rss_two = status_kb(two.pid, "VmRSS")
    assert capped.heap is not None and capped.heap.valid, capped.heap_reason
    assert len(capped.heap.arenas) == 2 and capped.cap.limit == 2
    assert capped.env.get("MALLOC_ARENA_MAX") == "2"
    assert not any(f.severity == Severity.WARNING for f in capped.findings)

    # This target's threads allocate one at a time (the worst case of one arena per thread): the
    # saving is the model's "turns" bound; the estimate, which cannot know that, is below it.
    measured = rss_many - rss_two
    ratio = prediction.saving_high_bytes / measured
    record_property("arena_saving_high_ratio", ratio)
    print(f"\npredicted saving {prediction.saving_bytes} B (turns {prediction.saving_high_bytes} B, together "
          f"{prediction.saving_low_bytes} B), measured {measured} B (VmRSS {rss_many} -> {rss_two}), "
          f"turns / measured {ratio:.3f}")
    assert 0.8 <= ratio <= 1.2, (prediction, rss_many, rss_two)
    assert prediction.saving_low_bytes <= prediction.saving_bytes <= prediction.saving_high_bytes
