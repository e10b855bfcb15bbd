"""RAM held by files: tmpfs-like mounts, their files, deleted-but-open files, SysV / POSIX / memfd
shared memory, and how much of meminfo Shmem they explain. One record per thing; bytes always.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

# Filesystem types whose files live in memory (man 5 tmpfs, Documentation/filesystems/ramfs-
# rootfs-initramfs.rst, Documentation/admin-guide/mm/hugetlbpage.rst). devtmpfs is shmem-backed
# when the kernel has CONFIG_TMPFS (drivers/base/devtmpfs.c), ramfs otherwise.
MEMORY_FSTYPES = ("tmpfs", "ramfs", "hugetlbfs", "devtmpfs")
# Which of them meminfo's Shmem counts: shmem pages (mm/shmem.c). ramfs pages are plain
# unevictable page cache; hugetlbfs pages are in HugePages_*.
SHMEM_FSTYPES = ("tmpfs", "devtmpfs")


@dataclass(frozen=True, slots=True)
class MountInfoLine:
    """One line of /proc/PID/mountinfo (man 5 proc_pid_mountinfo)."""

    mount_id: int
    parent_id: int
    major: int
    minor: int
    root: str
    mountpoint: str
    options: str
    fstype: str
    source: str
    super_options: str

    @property
    def device(self) -> str:
        return f"{self.major}:{self.minor}"

    def option(self, name: str) -> str | None:
        """A superblock option's value (``size`` of ``rw,size=65536k``), or None."""
        for item in self.super_options.split(","):
            key, _, value = item.partition("=")
            if key == name:
                return value
        return None


@dataclass(frozen=True, slots=True)
class Mount:
    """A memory-backed mount as seen from one mount namespace, with its statvfs figures.

    ``access_path`` is where memtop reaches it: the mountpoint itself in memtop's own mount
    namespace, ``/proc/PID/root/<mountpoint>`` in another one. Sizes are None when unknown,
    and ``usage_reason`` says why (no size limit, covered by another mount, not readable…).
    """

    info: MountInfoLine
    namespace: int  # inode of the mount namespace (stat /proc/PID/ns/mnt)
    namespace_pid: int | None  # the process it was seen through; None: memtop's own namespace
    access_path: str
    size_bytes: int | None = None
    used_bytes: int | None = None
    avail_bytes: int | None = None
    inodes_total: int | None = None
    inodes_used: int | None = None
    usage_reason: str | None = None
    covered_by: int | None = None  # mount id of a later mount on the same path, hiding this one
    duplicate_of: str | None = None  # "ns:mount_id" of the first row showing the same filesystem

    @property
    def mountpoint(self) -> str:
        return self.info.mountpoint

    @property
    def fstype(self) -> str:
        return self.info.fstype

    @property
    def device(self) -> str:
        return self.info.device

    @property
    def key(self) -> str:
        return f"{self.namespace}:{self.info.mount_id}"

    @property
    def in_shmem(self) -> bool:
        return self.info.fstype in SHMEM_FSTYPES

    @property
    def used_fraction(self) -> float | None:
        if self.size_bytes and self.used_bytes is not None:
            return self.used_bytes / self.size_bytes
        return None


@dataclass(frozen=True, slots=True)
class FileEntry:
    """One file found by the scan of a mount."""

    path: str  # as seen by the user: the mountpoint joined with the path inside the mount
    size_bytes: int  # st_size
    allocated_bytes: int  # st_blocks * 512: what the file really holds (a sparse file holds less)
    mtime: float
    uid: int
    owner: str


@dataclass(frozen=True, slots=True)
class ScanResult:
    """The largest and oldest files of one mount, and how much of the tree the scan saw."""

    mount_key: str
    mountpoint: str
    largest: tuple[FileEntry, ...]
    oldest: tuple[FileEntry, ...]
    files: int
    directories: int
    total_size_bytes: int
    total_allocated_bytes: int
    skipped_mounts: int  # directories on another device (mounts below this one): not entered
    errors: int
    truncated: bool  # the entry limit stopped the scan: the totals are lower bounds
    limit: int
    done: bool = True
    first_error: str | None = None


@dataclass(frozen=True, slots=True)
class Holder:
    """A process keeping a file: through an open fd, or a mapping (fd None, mapped True)."""

    pid: int
    comm: str
    fd: int | None = None
    mapped: bool = False


@dataclass(frozen=True, slots=True)
class DeletedOpenFile:
    """An unlinked file on a memory-backed mount that a process still holds open or mapped.

    Its pages stay allocated until the last holder lets go; ``du`` no longer sees it, ``df``
    (statvfs) still counts it.
    """

    path: str  # the name it had, without the kernel's " (deleted)" suffix
    device: str  # major:minor of the filesystem
    inode: int
    fstype: str | None
    mountpoint: str | None
    size_bytes: int | None
    allocated_bytes: int | None  # st_blocks * 512: the memory (or swap) it keeps
    holders: tuple[Holder, ...]
    reason: str | None = None  # why the sizes are unknown

    @property
    def kept_bytes(self) -> int | None:
        return self.allocated_bytes


@dataclass(frozen=True, slots=True)
class SysvSegment:
    """One line of /proc/sysvipc/shm (ipc/shm.c sysvipc_shm_proc_show)."""

    key: int
    shmid: int
    perms: int  # mode bits, including SHM_DEST (0o1000) and SHM_LOCKED (0o2000)
    size_bytes: int
    cpid: int
    lpid: int
    nattch: int
    uid: int
    gid: int
    cuid: int
    cgid: int
    atime: int
    dtime: int
    ctime: int
    rss_bytes: int | None
    swap_bytes: int | None
    owner: str = ""
    attached_pids: tuple[int, ...] = ()  # processes whose maps show /SYSV<key> with inode == shmid

    @property
    def orphan(self) -> bool:
        """No process attached: the segment lives until IPC_RMID or reboot (man 2 shmctl)."""
        return self.nattch == 0

    @property
    def marked_for_removal(self) -> bool:
        # SHM_DEST: IPC_RMID was called; the segment goes when the last process detaches.
        return bool(self.perms & 0o1000)


@dataclass(frozen=True, slots=True)
class PosixShmFile:
    """A file in /dev/shm: what shm_open(3) creates (glibc names it /dev/shm/NAME)."""

    path: str
    size_bytes: int
    allocated_bytes: int
    mtime: float
    uid: int
    owner: str
    holders: tuple[Holder, ...] = ()


@dataclass(frozen=True, slots=True)
class ShmemMapping:
    """A shared-memory mapping of one process: a memfd or shared anonymous memory.

    Rss/Pss/Swap come from /proc/PID/smaps (None until smaps was read for the process).
    """

    pid: int
    comm: str
    kind: str  # "memfd" or "shared anon"
    name: str  # memfd name, or the kernel's name of the mapping
    inode: int
    vma_bytes: int
    rss_bytes: int | None = None
    pss_bytes: int | None = None
    swap_bytes: int | None = None


@dataclass(frozen=True, slots=True)
class ShmemObject:
    """A memfd or a shared anonymous memory object, once however many processes hold it.

    Sized by fstat of an open fd (/proc/PID/fd/N) or of a mapping (/proc/PID/map_files/A-B,
    root only): ``allocated_bytes`` (st_blocks * 512) is what it holds, resident or swapped.
    """

    kind: str  # "memfd" or "shared anon"
    name: str
    device: str
    inode: int
    size_bytes: int | None
    allocated_bytes: int | None
    holders: tuple[Holder, ...]
    hugetlb: bool = False  # MFD_HUGETLB / MAP_HUGETLB: huge pages (HugePages_*), not Shmem
    reason: str | None = None  # why the size is unknown


@dataclass(frozen=True, slots=True)
class ShmemPart:
    """One line of the reconciliation: a share of meminfo Shmem and how sure it is."""

    name: str
    bytes: int | None
    quality: str  # "measured", "lower bound", "estimate", "remainder"
    source: str
    note: str


@dataclass(frozen=True, slots=True)
class ShmemReconciliation:
    shmem_bytes: int | None
    parts: tuple[ShmemPart, ...]
    remainder_bytes: int | None
    outside_shmem: tuple[ShmemPart, ...] = ()  # ramfs, hugetlbfs: memory-backed but not in Shmem
    notes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class TmpfsReport:
    """One pass over everything but the file scan (which runs separately, on demand)."""

    mounts: tuple[Mount, ...]
    namespaces: tuple[tuple[int, int | None, int], ...]  # (ns inode, pid seen through, processes in it)
    deleted_open: tuple[DeletedOpenFile, ...]
    sysv: tuple[SysvSegment, ...]
    posix: tuple[PosixShmFile, ...]
    objects: tuple[ShmemObject, ...]
    mappings: tuple[ShmemMapping, ...]
    reconciliation: ShmemReconciliation
    processes_seen: int = 0
    smaps_read: int = 0
    smaps_skipped: int = 0  # processes with shared mappings whose smaps the bounds left unread
    warnings: tuple[str, ...] = field(default=())
    cpu_s: float = 0.0


@dataclass(frozen=True, slots=True)
class TmpfsScans:
    """The file scans made of memory-backed mounts: mount key -> (result, monotonic time)."""

    scans: Mapping[str, tuple[ScanResult, float]]
