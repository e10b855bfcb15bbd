"""How long a trim stops its target: median of 20 trims of a 200 MiB spike-and-drain heap.

Run by hand, as root:  /work/main/.venv/bin/python -m bench.trim_stop [--runs 20] [--mib 200]

Three figures per trim:
- window: gdb's attach to its detach (memtop's own clock): the calling thread is away from
  the program for this long; it is what `memtop trim` reports as "stopped";
- other threads: the longest gap seen by a ticker thread in the target that wakes every 1 ms
  (measured by the target itself): other threads are stopped during attach/checks and
  during detach, but run during the call (gdb's default scheduler-locking);
- call: the time inside malloc_trim(0) (the madvise of ~200 MiB).
Goal (issue 4): median stop <= 250 ms.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile

from memtop.actions import identity_of, trim
from tests.actions_support import target_binary
from tests.support import Child


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--mib", type=int, default=200)
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("run as root (gdb attaches to the target)", file=sys.stderr)
        return 2
    os.environ["XDG_STATE_HOME"] = tempfile.mkdtemp(prefix="memtop-bench-")  # keep the real log clean
    windows, gaps, calls, released = [], [], [], []
    with Child([target_binary(), "0", "ticker"]) as child:
        identity = identity_of(child.pid)
        for i in range(args.runs):
            assert child.ask(f"spike {args.mib}", timeout=120) == "spiked"
            child.ask("gap")  # reset the ticker's longest gap
            result = trim.trim(identity, timeout=10)
            gap_us = int(child.ask("gap"))
            if not result.ok:
                print(f"run {i}: {result.status}: {result.message}", file=sys.stderr)
                continue
            windows.append(result.stopped_s * 1000)
            calls.append(result.call_s * 1000)
            gaps.append(gap_us / 1000)
            released.append(result.released_bytes / 2**20)
            print(f"run {i + 1:2d}: window {windows[-1]:6.1f} ms  other threads {gaps[-1]:6.1f} ms  "
                  f"call {calls[-1]:6.1f} ms  released {released[-1]:6.1f} MiB", flush=True)
    if not windows:
        return 1
    for name, values in (("window (attach->detach)", windows), ("other threads' longest gap", gaps),
                         ("malloc_trim call", calls)):
        print(f"{name:28s} median {statistics.median(values):6.1f} ms  min {min(values):6.1f}  max {max(values):6.1f}")
    print(f"released per trim: median {statistics.median(released):.1f} MiB; runs {len(windows)}/{args.runs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
