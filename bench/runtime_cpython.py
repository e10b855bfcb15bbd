"""How long the CPython runtime reader takes on a big Python process (run by hand, as root).

    .venv/bin/python bench/runtime_cpython.py [N_TUPLES]

Starts /usr/bin/python3.11 holding N small tuples (12 million: about 1.2 GiB RSS, 1,100 arenas),
reads it twice with memtop.collect.layers.explain and prints the runtime reader's own time
(RuntimeReport.read_seconds: the pool-header scan) and the whole explain's.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from memtop.collect.layers import explain  # noqa: E402
from tests.support import Child  # noqa: E402

CHILD = "import sys\nkeep = [(i, i) for i in range({n})]\nprint('READY', flush=True)\nsys.stdin.read()\n"


def main() -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 12_000_000
    child = Child(["/usr/bin/python3.11", "-c", CHILD.format(n=n)], timeout=300)
    try:
        rss = int(next(line for line in open(f"/proc/{child.pid}/status") if line.startswith("VmRSS")).split()[1]) << 10
        for _ in range(3):
            started = time.monotonic()
            report = explain(child.pid)
            elapsed = time.monotonic() - started
            rr = report.runtime_report
            print(f"RSS {rss >> 20} MiB, {rr.value('arenas')} arenas: runtime reader {rr.read_seconds:.2f} s, "
                  f"whole explain {elapsed:.2f} s ({rr.source})")
    finally:
        child.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
