"""A memory cgroup made for one test, on whichever version this machine's memory controller is
(v1 here; v2 in the kernel matrix's VMs), with the kernel's own files read back independently.

Every cgroup is removed at close, its tasks killed first, children before parents.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest

from memtop.procfs.cgroup import MemoryHierarchy, locate_memory_hierarchy
from tests.support import Child, kill_and_remove_cgroup


def memory_hierarchy_or_reason() -> tuple[MemoryHierarchy | None, str | None]:
    if os.geteuid() != 0:
        return None, "needs root to create a memory cgroup"
    try:
        hierarchy = locate_memory_hierarchy()
    except Exception as e:  # noqa: BLE001 - the reason is reported as the skip message
        return None, f"no memory controller: {e}"
    if hierarchy.mount_root not in ("", "/"):
        return None, f"this process sees only {hierarchy.mount_root} of the memory hierarchy (a cgroup namespace)"
    if hierarchy.version == 2:
        controls = (hierarchy.directory / "cgroup.subtree_control").read_text().split()
        if "memory" not in controls:
            return None, f"{hierarchy.directory}/cgroup.subtree_control does not enable memory for children"
    return hierarchy, None


@pytest.fixture
def hierarchy():
    """This machine's memory hierarchy, or the test skips with the reason (not root; no memory
    controller)."""
    found, reason = memory_hierarchy_or_reason()
    if found is None:
        pytest.skip(reason)
    return found


def v2_reason_here() -> str:
    """Why cgroup v2's memory files cannot be tested on this host (for skip messages)."""
    try:
        for line in Path("/proc/cgroups").read_text().splitlines():
            fields = line.split()
            if fields and fields[0] == "memory" and fields[1] != "0":
                return (f"the memory controller is bound to cgroup v1 hierarchy {fields[1]} here (/proc/cgroups): "
                        "a cgroup2 mount, even a private one in a mount namespace, cannot have it; the kernel "
                        "matrix runs these tests on v2 in VMs")
    except OSError:
        pass
    return "no cgroup v2 memory controller here"


class TestCgroup:
    """``<memory root>/memtop-test-<pid>-<n>`` (or a child of another TestCgroup)."""

    __test__ = False
    _count = 0

    def __init__(self, hierarchy: MemoryHierarchy, limit: int | None = None, parent: "TestCgroup | None" = None,
                 name: str | None = None):
        TestCgroup._count += 1
        self.hierarchy = hierarchy
        self.version = hierarchy.version
        base = parent.path if parent is not None else hierarchy.directory
        self.path = base / (name or f"memtop-test-{os.getpid()}-{TestCgroup._count}")
        self.parent = parent
        self.path.mkdir()
        self.children: list[TestCgroup] = []
        if parent is not None:
            parent.children.append(self)
        try:
            if self.version == 2:
                if (self.path / "memory.swap.max").exists():
                    (self.path / "memory.swap.max").write_text("0")
            if limit is not None:
                self.write("memory.max" if self.version == 2 else "memory.limit_in_bytes", str(limit))
        except OSError:
            self.path.rmdir()
            raise
        self.cgroup_path = hierarchy.path_of(self.path)

    def child(self, name: str, limit: int | None = None) -> "TestCgroup":
        if self.version == 2:
            self.write("cgroup.subtree_control", "+memory")
        return TestCgroup(self.hierarchy, limit, parent=self, name=name)

    def read(self, name: str) -> str:
        return (self.path / name).read_text()

    def write(self, name: str, value: str) -> None:
        (self.path / name).write_text(value)

    def flat(self, name: str) -> dict[str, int]:
        return {k: int(v) for k, v in (line.split() for line in self.read(name).splitlines() if line.strip())}

    def usage(self) -> int:
        return int(self.read("memory.current" if self.version == 2 else "memory.usage_in_bytes"))

    def oom_kills(self) -> int:
        return self.flat("memory.events" if self.version == 2 else "memory.oom_control")["oom_kill"]

    def pids(self) -> list[int]:
        try:
            return [int(x) for x in self.read("cgroup.procs").split()]
        except FileNotFoundError:
            return []

    def start(self, code: str, *args: str, **kw) -> Child:
        """A Python child that joins this cgroup before it execs."""
        return Child(["sh", "-c", 'echo $$ > "$0" && exec "$@"', str(self.path / "cgroup.procs"),
                      sys.executable, "-c", code, *args], **kw)

    def close(self) -> None:
        for child in list(self.children):
            child.close()
        kill_and_remove_cgroup(self.path)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


HOLD_ANON = r"""
import sys
block = bytearray(int(sys.argv[1]) << 20)
print('READY', flush=True)
sys.stdin.readline()
"""

HOLD_FILES = r"""
import os, sys
cold, dirty, shm = sys.argv[1:4]
with open(cold, 'rb') as f:
    while f.read(1 << 20):
        pass
with open(dirty, 'wb') as f:
    f.write(os.urandom(4 << 20))
with open(shm, 'wb') as f:
    f.write(os.urandom(8 << 20))
print('READY', flush=True)
sys.stdin.readline()
"""

# Grows by 1 MiB every ``argv[1]`` seconds after "go", forever (until the OOM killer ends it).
GROW = r"""
import sys, time
step = float(sys.argv[1])
chunks = []
print('READY', flush=True)
sys.stdin.readline()
while True:
    chunks.append(bytearray(1 << 20))
    time.sleep(step)
"""


def fs_type(path: Path) -> str:
    """The filesystem type of the mount holding ``path`` (/proc/self/mountinfo, longest prefix)."""
    real = os.path.realpath(path)
    best, kind = "", "?"
    text = Path("/proc/self/mountinfo").read_bytes().decode("utf-8", "surrogateescape")
    for line in text.splitlines():
        left, _, right = line.partition(" - ")
        mount = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), left.split()[4])
        inside = real == mount or real.startswith(mount.rstrip("/") + "/")
        if inside and len(mount) >= len(best):
            best, kind = mount, right.split()[0]
    return kind


DISK_FILESYSTEMS = frozenset(("ext4", "ext3", "xfs", "btrfs", "f2fs"))
