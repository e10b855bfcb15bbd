"""The allocator's tuning state read from mp_ of real processes: the dynamic mmap threshold
moving after a large free(), and thresholds fixed through the environment."""

from __future__ import annotations

import os

import pytest

from memtop.heap.arena_advice import analyze_arenas
from tests.support import IS_ROOT, python_child

pytestmark = [
    pytest.mark.live,
    pytest.mark.skipif(not IS_ROOT, reason="the heap walk reads /proc/PID/mem: needs root (or CAP_SYS_PTRACE)"),
]

FREE_A_BIG_CHUNK = """
import ctypes, sys
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
p = libc.malloc(3 << 20)   # above the 128 KiB threshold: mmapped
libc.free(p)               # malloc.c __libc_free: mmap_threshold = 3 MiB + page, trim_threshold = 2x
print("READY", flush=True)
sys.stdin.readline()
"""


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "GLIBC_TUNABLES"))}
    env.update(extra)
    return env


def test_dynamic_threshold_moves_after_freeing_a_mmapped_chunk(children):
    child = python_child(FREE_A_BIG_CHUNK, env=_env())
    children.append(child)
    analysis = analyze_arenas(child.pid, census=False)
    t = analysis.tuning
    assert t is not None, analysis.heap_reason
    assert t.dynamic_threshold and t.threshold_moved
    assert 3 << 20 <= t.mmap_threshold <= (3 << 20) + 8192
    assert t.trim_threshold == 2 * t.mmap_threshold
    assert "has moved from 128 KiB" in t.notes[0]
    assert any(f.text.startswith("Allocator tuning: the dynamic mmap threshold has moved") for f in analysis.findings)


def test_thresholds_set_in_the_environment_are_fixed_and_shown(children):
    child = python_child(FREE_A_BIG_CHUNK, env=_env(MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TOP_PAD_="0",
                                                    GLIBC_TUNABLES="glibc.malloc.arena_max=3"))
    children.append(child)
    analysis = analyze_arenas(child.pid, census=False)
    t = analysis.tuning
    assert t is not None, analysis.heap_reason
    assert not t.dynamic_threshold and not t.threshold_moved
    assert t.mmap_threshold == 65536 and t.top_pad == 0  # the free() above did not move it
    assert analysis.env.get("MALLOC_MMAP_THRESHOLD_") == "65536"
    assert analysis.env.get("glibc.malloc.arena_max") == "3"
    assert analysis.cap.limit == 3 and analysis.cap.basis == "mp_.arena_max = 3"
    assert any("mp_.arena_max = 3 (GLIBC_TUNABLES glibc.malloc.arena_max=3)" in f.text for f in analysis.findings)
