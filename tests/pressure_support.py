"""Helpers for the pressure tests: a v1 memory cgroup made for one test, and children that
create memory pressure inside it (page-cache thrashing, anonymous allocation past the limit).

The cgroup is always removed, even when the test fails: its tasks are killed first.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from tests.support import Child, kill_and_remove_cgroup

V1_MEMORY = Path("/sys/fs/cgroup/memory")

# Maps a file bigger than the cgroup's limit and touches every page, forever: the cgroup keeps
# reclaiming its own page cache and refaulting it, which the kernel counts as memory stall.
THRASH_CODE = r"""
import mmap, sys
f = open(sys.argv[1], 'rb')
m = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)
print('READY', flush=True)
n = len(m)
while True:
    for i in range(0, n, 4096):
        m[i]
"""

# Allocates and touches anonymous memory in 1 MiB steps until told the total, then waits.
ALLOC_CODE = r"""
import sys
print('READY', flush=True)
chunks = []
for line in sys.stdin:
    mib = int(line)
    while len(chunks) < mib:
        chunks.append(bytearray(1 << 20))  # bytearray zero-fills: every page is touched
    print('HAVE', len(chunks), flush=True)
"""


def v1_memory_available() -> str | None:
    """None when a v1 memory cgroup can be made here, else why not."""
    if os.geteuid() != 0:
        return "needs root to create a memory cgroup"
    if not (V1_MEMORY / "memory.limit_in_bytes").exists():
        return f"no cgroup v1 memory controller at {V1_MEMORY}"
    return None


class V1Cgroup:
    """``/sys/fs/cgroup/memory/memtop-test-<pid>-<n>`` with a memory limit; removed at close."""

    _count = 0

    def __init__(self, limit_bytes: int):
        V1Cgroup._count += 1
        self.path = V1_MEMORY / f"memtop-test-{os.getpid()}-{V1Cgroup._count}"
        self.path.mkdir()
        try:
            (self.path / "memory.limit_in_bytes").write_text(str(limit_bytes))
        except OSError:
            self.path.rmdir()
            raise
        self.cgroup_path = "/" + self.path.name

    def read(self, name: str) -> str:
        return (self.path / name).read_text()

    def pids(self) -> list[int]:
        try:
            return [int(x) for x in self.read("cgroup.procs").split()]
        except FileNotFoundError:
            return []

    def start(self, code: str, *args: str, **kw) -> Child:
        """A Python child that joins this cgroup before it execs (so all it allocates is charged here)."""
        return Child(["sh", "-c", 'echo $$ > "$0" && exec "$@"', str(self.path / "cgroup.procs"),
                      sys.executable, "-c", code, *args], **kw)

    def close(self) -> None:
        kill_and_remove_cgroup(self.path)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def make_cold_file(path: Path, size: int) -> Path:
    """A file of ``size`` bytes on disk and not in the page cache (so reads are charged to the reader)."""
    block = os.urandom(1 << 20)
    with open(path, "wb") as f:
        for _ in range(size >> 20):
            f.write(block)
        f.flush()
        os.fsync(f.fileno())
        os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
    return path


def memory_psi_total_us() -> int:
    """An independent read of /proc/pressure/memory's some total."""
    for line in Path("/proc/pressure/memory").read_text().splitlines():
        if line.startswith("some"):
            return int(line.rsplit("total=", 1)[1])
    raise ValueError("no some line")
