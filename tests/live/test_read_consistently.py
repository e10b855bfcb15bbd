"""The retry every non-glibc heap reader uses (memtop.heap.allocators.read_consistently), on a
real process: a walk that sees the heap change is tried again, a heap that never holds still is
said with the last problem, and a process that exits during the walks is "gone"."""

import sys

import pytest

from memtop.heap.allocators import ATTEMPTS, Inconsistent, ReaderError, read_consistently
from memtop.heap.memory import MemoryReadError, TargetMemory

SLEEPER = [sys.executable, "-c", "import time; print('READY', flush=True); time.sleep(600)"]


def _changed(detail: str) -> Exception:
    return Inconsistent(detail)


def _unreadable(detail: str) -> Exception:
    return MemoryReadError(0x1000, detail)


def _failing(times: int, value, errors):
    """A read that fails ``times`` times (raising what ``errors`` make, in turn), then returns ``value``."""
    calls = []

    def read():
        calls.append(1)
        if len(calls) <= times:
            raise errors[(len(calls) - 1) % len(errors)](f"changed at try {len(calls)}")
        return value

    return read, calls


def test_a_walk_that_sees_the_heap_change_is_tried_again(children):
    child = children.start(SLEEPER)
    rereads = []
    with TargetMemory(child.pid) as mem:
        read, calls = _failing(ATTEMPTS - 1, {"chunks": 7}, [_changed, _unreadable])
        value, problem = read_consistently(mem, child.pid, read, again=lambda: rereads.append(1))
    assert value == {"chunks": 7} and problem is None
    assert len(calls) == ATTEMPTS and len(rereads) == ATTEMPTS - 1  # the maps reread before each new try


def test_a_heap_that_never_holds_still_gives_the_last_problem(children):
    child = children.start(SLEEPER)
    with TargetMemory(child.pid) as mem:
        read, calls = _failing(ATTEMPTS + 5, object(), [_changed])
        value, problem = read_consistently(mem, child.pid, read)
    assert value is None and problem == f"changed at try {ATTEMPTS}"
    assert len(calls) == ATTEMPTS


def test_a_process_that_exits_during_the_walk_is_gone(children):
    child = children.start(SLEEPER)
    with TargetMemory(child.pid) as mem:
        def read():
            child.proc.kill()
            child.proc.wait(10)  # reaped: its /proc entry is gone
            raise _unreadable("the process exited")

        with pytest.raises(ReaderError) as info:
            read_consistently(mem, child.pid, read)
    assert info.value.status == "gone" and str(child.pid) in info.value.reason


def test_other_errors_are_not_retried(children):
    child = children.start(SLEEPER)
    with TargetMemory(child.pid) as mem:
        read, calls = _failing(1, None, [ValueError])
        with pytest.raises(ValueError):
            read_consistently(mem, child.pid, read)
    assert len(calls) == 1
