"""Helpers of the record/replay tests: a Python child whose RSS the test sets, and a recording
made in-process with the same Recorder and RecordWriter that `memtop record` uses."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

from memtop.procfs import PROC
from memtop.collect.record import Recorder, TickCapture
from memtop.output.record import DEFAULT_MAX_BYTES, RecordWriter
from memtop.output.record.writer import cap_text
from tests.support import Child

MIB = 2**20

# `grow N` allocates N MiB and writes to every page (bytes * n fills them, so they are resident),
# then answers with VmRSS.
GROWER = r"""
import sys
held = []
def rss():
    with open("/proc/self/status") as f:
        return next(l.split()[1] for l in f if l.startswith("VmRSS:"))
print("READY", flush=True)
for line in sys.stdin:
    cmd, _, arg = line.strip().partition(" ")
    if cmd == "grow":
        held.append(b"\x01" * (int(arg) << 20))
    print("OK", rss(), flush=True)
"""


def start_grower(children, mib: int) -> Child:
    child = children.start([sys.executable, "-c", GROWER, "record-test-grower"])
    assert child.ask(f"grow {mib}").startswith("OK")
    return child


def record_growth(children, path: Path, ticks: int, *, hold_mib: int, grow_mib: int, at: int,
                  **kw) -> tuple[Child, list[TickCapture]]:
    """A child holding ``hold_mib`` that grows by ``grow_mib`` before tick ``at``, recorded for
    ``ticks`` ticks (``kw``: :func:`record_in_process`'s). Returns the child and the captures."""
    child = start_grower(children, hold_mib)

    def before(i):
        if i == at:
            assert child.ask(f"grow {grow_mib}").startswith("OK")

    return child, record_in_process(path, ticks, before_tick=before, **kw)


def record_in_process(path: Path, ticks: int, *, before_tick=None, max_bytes: int = DEFAULT_MAX_BYTES,
                      interval_s: float = 2.0, after_write=None, root: Path = PROC,
                      pid: int | None = None, part_duty: float | None = None) -> list[TickCapture]:
    """Capture and write ``ticks`` ticks; ``before_tick(i)`` runs before tick i is read,
    ``after_write(writer, i)`` after it is written (``pid``: as `memtop record --pid`;
    ``part_duty``: the Collector's, 0 for ticks taken back to back that must read a part at
    each of its cadence's ticks however long the part's last run took). Returns what was captured."""
    recorder = Recorder(root, pid=pid)
    if part_duty is not None:
        recorder.collector.part_duty = part_duty
    writer = RecordWriter(path, recorder.meta(interval_s, max_bytes), max_bytes=max_bytes)
    captures = []
    try:
        for i in range(ticks):
            if before_tick is not None:
                before_tick(i)
            capture = recorder.capture()
            writer.write(capture)
            captures.append(capture)
            if after_write is not None:
                after_write(writer, i)
    finally:
        writer.close()
        recorder.close()
    return captures


def comparable(snapshot, view):
    """A view with its history told as points: two snapshots number their ticks differently (the
    sampler from its start, a replay from its window's first tick), so their views are compared
    by what they stand for. The command line as a recording keeps it (cut to CMDLINE_LIMIT)."""
    sample = replace(view.sample, cmdline=cap_text(view.sample.cmdline))
    return replace(view, sample=sample, since=0, runs=()), snapshot.history(view)


def same_processes(a, b) -> bool:
    """Whether two snapshots show the same processes, figures and histories."""
    return [comparable(a, v) for v in a.processes] == [comparable(b, v) for v in b.processes]
