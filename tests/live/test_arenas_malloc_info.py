"""malloc_info beside the heap walk (the Arenas tab's `m`), live on a Python process that freed
195 MiB of small objects: what memtop's own fetch allocates in the target is not a difference,
and a large bin whose chunks fall in several histogram buckets is compared as one group.

A helper's tour saw `≠` on both: free + top 8,641 bytes apart (open_memstream's FILE, its 8 KiB
stdio buffer and the XML's buffer, allocated by the fetch itself), and one bin holding chunks
of 2.16 MiB, 2.94 MiB and 190 MiB counted as 3 chunks in the 2M bucket against 1 there by the
walk (and 0 against 1 in 16M+). The user concluded the walk was wrong; it was not.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from rich.style import Style

from memtop.collect.layers import explain
from memtop.heap.gdb import fetch_malloc_info
from memtop.heap.malloc_info import parse_malloc_info
from memtop.model.arenas import compare_with_malloc_info
from memtop.model.process import ProcessIdentity
from memtop.procfs.process import read_stat
from memtop.tui.arenas import _histogram_text
from tests.support import IS_ROOT

pytestmark = [pytest.mark.live, pytest.mark.skipif(not IS_ROOT, reason="reads and calls into another process: needs root")]

FREED = "import time; x = [bytearray(1000) for _ in range(200000)]; del x; print('READY', flush=True); time.sleep(600)"


def test_the_walk_and_malloc_info_agree_on_a_heap_with_one_wide_bin():
    child = subprocess.Popen([sys.executable, "-c", FREED], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "READY"
        heap = explain(child.pid).heap
        assert heap is not None and heap.valid, heap and heap.reason
        identity = ProcessIdentity(child.pid, read_stat(child.pid).start_ticks)
        info = parse_malloc_info(fetch_malloc_info(identity, 20.0, mutex_addresses=[a.address for a in heap.arenas]))
    finally:
        child.kill()
        child.wait()
    main, mi = heap.arenas[0], info.arenas[0]
    # GIVEN a bin whose chunks fall in more than one bucket (the case of the tour)
    wide = [s for s in mi.sizes if s.to_bytes >= 2 * s.from_bytes and s.count > 1]
    assert wide, mi.sizes
    # THEN every figure agrees within what the fetch itself allocated
    deltas = compare_with_malloc_info(heap.arenas, info)
    assert not [d for d in deltas if d.differs], deltas
    # AND the histogram shows no difference beyond the fetch's own few chunks (≈), the wide
    # bin's buckets bracketed as one
    styles = {"dim": Style(), "bar": Style(), "differs": Style(), "title": Style()}
    text = _histogram_text(main, mi, styles).plain
    assert "≠" not in text and "┐" in text, text
