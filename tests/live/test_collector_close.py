"""Closing the Collector while the sampler thread ticks (memtop quitting: Textual unmounts the app
while its sampler worker is in the middle of a tick). Before the fix, close() iterated the dict of
held /proc fds while the ticking thread added to it ("dictionary changed size during iteration",
seen when quitting at 1,000 processes) and the finalizer then closed the same fd numbers again:
by then they may be other files' (here: the test's own)."""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import threading
import time

import pytest

from memtop.collect.collector import Collector
from memtop.collect.parts import default_parts
from memtop.collect.sampler import Sampler
from memtop.procfs import PROC

pytestmark = pytest.mark.live


def open_fds() -> set[int]:
    return {int(n) for n in os.listdir("/proc/self/fd")}


@pytest.fixture
def sleepers():
    """200 sleeping processes (a tick reads each), in a process group of their own."""
    group = subprocess.Popen(["sh", "-c", "for i in $(seq 200); do sleep 600 & done; wait"], start_new_session=True)
    try:
        yield
    finally:
        os.killpg(group.pid, signal.SIGKILL)
        group.wait()


def test_close_during_ticks_waits_for_the_tick_and_closes_each_fd_once(tmp_path, sleepers):
    if True:
        before = open_fds()
        for attempt in range(5):  # close at different points of a tick
            collector = Collector(PROC, parts=default_parts(PROC), sampler=Sampler(PROC), workers=2)
            collector.want("t", ("psi", "vmstat", "kernel"))
            collector.tick()
            errors: list[BaseException] = []
            ticks = 0
            stop = threading.Event()

            def ticking():
                nonlocal ticks
                try:
                    while not stop.is_set():
                        collector.tick()
                        ticks += 1
                except BaseException as e:  # noqa: BLE001 - the test reports it
                    errors.append(e)

            thread = threading.Thread(target=ticking)
            thread.start()
            time.sleep(0.05 + 0.037 * attempt)
            collector.close()
            stop.set()
            thread.join(10)
            assert not thread.is_alive()
            assert errors == [], errors
            assert ticks >= 1
            # Everything the sampler and the parts held is closed (the pool's threads may still be
            # ending a run told to stop: give them the timeout close() allows).
            deadline = time.monotonic() + 3
            while open_fds() - before and time.monotonic() < deadline:
                time.sleep(0.05)
            assert open_fds() - before == set()
            # A file opened now may get a number the sampler held: the finalizer must not close it.
            mine = [os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY) for _ in range(64)]
            try:
                del collector
                gc.collect()
                for fd in mine:
                    os.fstat(fd)  # EBADF if it was closed under us
            finally:
                for fd in mine:
                    os.close(fd)
