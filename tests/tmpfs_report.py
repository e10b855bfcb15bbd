"""A fixed TmpfsReport (built by the real reconciliation from fixed records) for deterministic
JSON and TUI snapshot tests."""

from __future__ import annotations

from memtop.collect.tmpfs import reconcile
from memtop.model.tmpfs import (
    DeletedOpenFile,
    FileEntry,
    Holder,
    Mount,
    MountInfoLine,
    PosixShmFile,
    ScanResult,
    ShmemMapping,
    ShmemObject,
    SysvSegment,
    TmpfsReport,
)

MiB = 2**20
NS = 4026531832
NOW = 1_795_700_000.0


def _line(mount_id, parent, minor, mountpoint, fstype="tmpfs", source="tmpfs", opts="rw,size=65536k"):
    return MountInfoLine(mount_id, parent, 0, minor, "/", mountpoint, "rw,relatime", fstype, source, opts)


MOUNTS = (
    Mount(_line(24, 27, 6, "/dev", "devtmpfs", "devtmpfs"), NS, None, "/dev", 12 * 2**30, 0, 12 * 2**30, 3083608, 114),
    Mount(_line(25, 24, 23, "/dev/shm"), NS, None, "/dev/shm", usage_reason="covered by mount 30 on the same path: not reachable",
          covered_by=30),
    Mount(_line(30, 25, 27, "/dev/shm"), NS, None, "/dev/shm", 24 * 2**30, 40 * MiB, 24 * 2**30 - 40 * MiB, 3085457, 12),
    Mount(_line(42, 27, 39, "/run/user/1000", opts="rw,size=65536k"), NS, None, "/run/user/1000", 64 * MiB, 8 * MiB,
          56 * MiB, 16384, 3),
    Mount(_line(50, 27, 44, "/mnt/ram", "ramfs", "ramfs", "rw"), NS, None, "/mnt/ram",
          usage_reason="ramfs has no size limit and reports no usage to statfs"),
    Mount(_line(7, 7, 6, "/", "devtmpfs", "devtmpfs"), 4026531860, 25, "/proc/25/root/", 12 * 2**30, 0, 12 * 2**30,
          3083608, 114, duplicate_of=f"{NS}:24"),
)

DELETED = (
    DeletedOpenFile("/dev/shm/cache.tmp", "0:27", 17, "tmpfs", "/dev/shm", 24 * MiB, 24 * MiB,
                    (Holder(4242, "worker", 7, False), Holder(4242, "worker", None, True), Holder(4300, "worker", 5, False))),
)

SYSV = (
    SysvSegment(0x4D454D54, 1, 0o640, 16 * MiB, 3100, 3100, 0, 0, 0, 0, 0, 1795696621, 1795696700, 1795696621,
                12 * MiB, 0, owner="root"),
    SysvSegment(0, 2, 0o1600, 4 * MiB, 4242, 4242, 1, 1000, 1000, 1000, 1000, 1795696621, 0, 1795696621,
                4 * MiB, 0, owner="alice", attached_pids=(4242,)),
)

POSIX = (
    PosixShmFile("/dev/shm/pulse-shm-1", 64 * MiB, 16 * MiB, NOW - 7200, 1000, "alice", (Holder(4300, "pulseaudio", None, True),)),
)

OBJECTS = (
    ShmemObject("memfd", "wayland-pool", "0:1", 3, 6 * MiB, 6 * MiB, (Holder(4242, "worker", 9, False),)),
    ShmemObject("shared anon", "/dev/zero", "0:1", 4, 2 * MiB, 2 * MiB,
                (Holder(4242, "worker", None, True), Holder(4243, "worker", None, True))),
)

MAPPINGS = (
    ShmemMapping(4242, "worker", "memfd", "wayland-pool", 3, 6 * MiB, 5 * MiB, 5 * MiB, 0),
    ShmemMapping(4242, "worker", "shared anon", "/dev/zero", 4, 2 * MiB, 2 * MiB, 1 * MiB, 0),
    ShmemMapping(4243, "worker", "shared anon", "/dev/zero", 4, 2 * MiB, 2 * MiB, 1 * MiB, 0),
)

MEMINFO = {"MemTotal": 16 * 2**30, "Shmem": 80 * MiB, "SwapTotal": 0, "SwapFree": 0}


def fixed_report() -> TmpfsReport:
    return TmpfsReport(
        mounts=MOUNTS,
        namespaces=((NS, None, 80), (4026531860, 25, 1)),
        deleted_open=DELETED,
        sysv=SYSV,
        posix=POSIX,
        objects=OBJECTS,
        mappings=MAPPINGS,
        reconciliation=reconcile(MEMINFO, MOUNTS, SYSV, OBJECTS, MAPPINGS, deleted_open=DELETED),
        processes_seen=81,
        smaps_read=2,
    )


def fixed_scan() -> ScanResult:
    files = (
        FileEntry("/dev/shm/cache.big", 32 * MiB, 32 * MiB, NOW - 90_000, 1000, "alice"),
        FileEntry("/dev/shm/sparse.img", 1024 * MiB, 4096, NOW - 60, 0, "root"),
        FileEntry("/dev/shm/old.log", 4096, 4096, NOW - 30 * 86400, 0, "root"),
    )
    return ScanResult(f"{NS}:30", "/dev/shm", files[:2], (files[2], files[0], files[1]), 3, 1,
                      32 * MiB + 1024 * MiB + 4096, 32 * MiB + 8192, 0, 0, False, 200_000)
