"""malloc_info(3) fetched from a process through gdb, on request: the allocator's own account of
its arenas, beside memtop's read-only walk (the Arenas tab's ``m``).

It calls into the process (open_memstream, malloc_info, fclose, free: a few KiB allocated and
freed in one arena, nothing written to its streams or files) through the safe gdb protocol of
memtop/heap/gdb.py, which checks the identity, waits for free arena locks and measures the stop.
"""

from __future__ import annotations

import time
from pathlib import Path

from memtop.model.arenas import MallocInfoResult
from memtop.model.process import ProcessIdentity
from memtop.procfs import PROC

TIMEOUT_S = 10.0


def fetch(identity: ProcessIdentity, mutexes: tuple[int, ...] = (), root: Path = PROC,
          timeout_s: float = TIMEOUT_S) -> MallocInfoResult:
    """malloc_info of ``identity``, parsed, or the reason it could not be had. Never raises."""
    from memtop.heap.gdb import GdbError, fetch_malloc_info
    from memtop.heap.malloc_info import parse_malloc_info
    from memtop.procfs import ParseError

    started = time.monotonic()
    info, error = None, None
    try:
        info = parse_malloc_info(fetch_malloc_info(identity, timeout_s, mutex_addresses=list(mutexes), root=root))
    except (GdbError, ParseError) as e:
        error = str(e)
    except TimeoutError:
        error = f"malloc_info did not finish within {timeout_s:.0f} s"
    now = time.monotonic()
    return MallocInfoResult(identity, info, error, now - started, now)
