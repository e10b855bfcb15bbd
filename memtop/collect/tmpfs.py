"""Collect RAM held by files: memory-backed mounts (in every mount namespace seen), deleted but
open files, SysV / POSIX / memfd shared memory, and the reconciliation with meminfo Shmem.

One :func:`collect_report` pass reads mountinfo once per mount namespace, statvfs per mount,
/proc/sysvipc/shm, every process's fd links and maps (cheap: no page-table walk), and full
smaps (expensive: walks page tables) only for the few processes whose maps show memfd or
shared anonymous mappings, within bounds. The largest-files scan (:func:`scan_tree`) is
separate: it runs on demand, in a worker, with progress.
"""

from __future__ import annotations

import heapq
import os
import pwd
import stat as stat_mod
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Mapping

from memtop.format import counted
from memtop.model.tmpfs import (
    MEMORY_FSTYPES,
    SHMEM_FSTYPES,
    DeletedOpenFile,
    FileEntry,
    Holder,
    Mount,
    MountInfoLine,
    PosixShmFile,
    ScanResult,
    ShmemMapping,
    ShmemObject,
    ShmemPart,
    ShmemReconciliation,
    TmpfsReport,
)
from memtop.procfs import PAGE_SIZE, PROC, AccessDenied, NoSuchProcess, ProcfsError
from memtop.procfs import tmpfs as tfs
from memtop.procfs.process import list_pids

# Bounds of one pass (the tab re-runs it every tick while visible).
SMAPS_MAX_PROCESSES = 32  # full smaps reads per pass
SMAPS_MAX_BYTES = 8 * 2**20  # skip a process whose smaps text is larger (tens of thousands of mappings)
SCAN_LIMIT = 200_000  # entries (files + directories) visited per mount scan
SCAN_TOP = 50  # largest / oldest files kept per mount
POSIX_SHM_MAX = 2000  # files listed from /dev/shm

_UINT64_MAX = 2**64 - 1


_owner_cache: dict[int, str] = {}


def owner_name(uid: int) -> str:
    name = _owner_cache.get(uid)
    if name is None:
        try:
            name = pwd.getpwuid(uid).pw_name
        except KeyError:
            name = str(uid)
        _owner_cache[uid] = name
    return name


# --- mounts --------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Usage:
    size_bytes: int | None
    used_bytes: int | None
    avail_bytes: int | None
    inodes_total: int | None
    inodes_used: int | None
    reason: str | None


def usage_from_statvfs(fstype: str, st) -> Usage:
    """Size, used and inodes from statvfs(3), honest about what a filesystem does not report.

    tmpfs without a size limit (size=0) and ramfs report zero blocks (mm/shmem.c shmem_statfs,
    fs/libfs.c simple_statfs); hugetlbfs without a limit too (fs/hugetlbfs/inode.c): used is
    then unknown here, and the file scan's total is the only measure.
    """
    frsize = st.f_frsize or st.f_bsize
    reason = None
    if st.f_blocks == 0:
        size = used = avail = None
        reason = ("ramfs has no size limit and reports no usage to statfs" if fstype == "ramfs"
                  else "no size limit (size=0): statfs reports no usage")
    else:
        size = st.f_blocks * frsize
        used = (st.f_blocks - st.f_bfree) * frsize
        avail = st.f_bavail * frsize
    if st.f_files in (0, _UINT64_MAX):
        inodes_total = inodes_used = None
    else:
        inodes_total = st.f_files
        inodes_used = st.f_files - st.f_ffree
    return Usage(size, used, avail, inodes_total, inodes_used, reason)


@dataclass
class MountDiscovery:
    mounts: list[Mount]
    namespaces: list[tuple[int, int | None, int]]
    pid_namespace: dict[int, int]
    own_namespace: int | None
    warnings: list[str] = field(default_factory=list)


def _covered(lines: tuple[MountInfoLine, ...]) -> dict[int, int]:
    """mount id -> id of the mount stacked on the same path on top of it (it hides it)."""
    out = {}
    for top in lines:
        for below in lines:
            if top.parent_id == below.mount_id and top.mountpoint == below.mountpoint and top is not below:
                out[below.mount_id] = top.mount_id
    return out


def discover_mounts(root: Path = PROC, pids: list[int] | None = None, *,
                    statvfs: Callable = os.statvfs, stat: Callable = os.stat) -> MountDiscovery:
    """Memory-backed mounts of memtop's mount namespace and of every other one seen among the
    processes (each namespace read once, through the first process that lets us)."""
    warnings: list[str] = []
    try:
        own_ns = tfs.mount_namespace("self", root)
    except ProcfsError:
        own_ns = None
    pids = list_pids(root) if pids is None else pids
    pid_ns: dict[int, int] = {}
    members: dict[int, list[int]] = {}
    for pid in pids:
        try:
            ns = tfs.mount_namespace(pid, root)
        except ProcfsError:
            continue
        pid_ns[pid] = ns
        members.setdefault(ns, []).append(pid)

    tables: list[tuple[int, int | None, tuple[MountInfoLine, ...]]] = []
    try:
        tables.append((own_ns if own_ns is not None else 0, None, tfs.read_mountinfo("self", root)))
    except ProcfsError as e:
        warnings.append(f"own mountinfo unreadable: {e}")
    namespaces: list[tuple[int, int | None, int]] = [(own_ns or 0, None, len(members.get(own_ns, [])))]
    for ns, ns_pids in sorted(members.items()):
        if ns == own_ns:
            continue
        for pid in ns_pids:
            try:
                tables.append((ns, pid, tfs.read_mountinfo(pid, root)))
                namespaces.append((ns, pid, len(ns_pids)))
                break
            except NoSuchProcess:
                continue
            except AccessDenied as e:
                warnings.append(f"mount namespace {ns}: {e.reason}")
                break
            except ProcfsError as e:
                warnings.append(f"mount namespace {ns}: {e}")
                break

    mounts: list[Mount] = []
    first_by_device: dict[str, Mount] = {}
    for ns, via_pid, lines in tables:
        covered = _covered(lines)
        for line in lines:
            if line.fstype not in MEMORY_FSTYPES:
                continue
            access = line.mountpoint if via_pid is None else f"{root}/{via_pid}/root{line.mountpoint}"
            mount = Mount(info=line, namespace=ns, namespace_pid=via_pid, access_path=access,
                          covered_by=covered.get(line.mount_id))
            first = first_by_device.get(line.device)
            if first is not None:
                mount = replace(mount, duplicate_of=first.key)
            mount = _with_usage(mount, first, statvfs, stat)
            if first is None or (first.used_bytes is None and mount.used_bytes is not None):
                first_by_device[line.device] = mount
            mounts.append(mount)
    return MountDiscovery(mounts, namespaces, pid_ns, own_ns, warnings)


def _with_usage(mount: Mount, first: Mount | None, statvfs, stat) -> Mount:
    line = mount.info
    if mount.covered_by is None:
        try:
            st_dev = stat(mount.access_path).st_dev
            if (os.major(st_dev), os.minor(st_dev)) != (line.major, line.minor):
                raise LookupError(f"{mount.access_path} leads to another filesystem (device "
                                  f"{os.major(st_dev)}:{os.minor(st_dev)}, not {line.device})")
            u = usage_from_statvfs(line.fstype, statvfs(mount.access_path))
            return replace(mount, size_bytes=u.size_bytes, used_bytes=u.used_bytes, avail_bytes=u.avail_bytes,
                           inodes_total=u.inodes_total, inodes_used=u.inodes_used, usage_reason=u.reason)
        except (OSError, LookupError) as e:
            reason = str(e) if isinstance(e, LookupError) else f"statvfs({mount.access_path}): {e.strerror}"
    else:
        reason = f"covered by mount {mount.covered_by} on the same path: not reachable"
    if first is not None and (first.used_bytes is not None or first.usage_reason):
        # Same superblock seen elsewhere: same figures.
        return replace(mount, size_bytes=first.size_bytes, used_bytes=first.used_bytes, avail_bytes=first.avail_bytes,
                       inodes_total=first.inodes_total, inodes_used=first.inodes_used,
                       usage_reason=first.usage_reason)
    return replace(mount, usage_reason=reason)


# --- the largest-files scan ------------------------------------------------------------------

class ScanCancelled(Exception):
    pass


def scan_tree(top: str, *, mount_key: str = "", mountpoint: str | None = None, limit: int = SCAN_LIMIT,
              keep: int = SCAN_TOP, progress: Callable[[int, int], bool] | None = None,
              progress_every: int = 2000, now: float | None = None) -> ScanResult:
    """Walk the tree at ``top`` without following symlinks or entering other filesystems, and
    keep the ``keep`` largest (by allocated bytes) and oldest (by mtime) regular files.

    Memory stays bounded: two heaps of ``keep`` entries plus a stack of directory paths, and at
    most ``limit`` entries are visited (then ``truncated`` is set). ``progress(entries, files)``
    is called every ``progress_every`` entries; returning False cancels (ScanCancelled).
    """
    mountpoint = top if mountpoint is None else mountpoint
    try:
        root_dev = os.lstat(top).st_dev
    except OSError as e:
        return ScanResult(mount_key, mountpoint, (), (), 0, 0, 0, 0, 0, 1, False, limit,
                          first_error=f"{top}: {e.strerror}")
    largest: list[tuple[int, int, str, os.stat_result]] = []  # min-heap on (allocated, size)
    oldest: list[tuple[float, str, os.stat_result]] = []  # max-heap on mtime (negated)
    files = dirs = entries = errors = skipped = 0
    total_size = total_alloc = 0
    first_error = None
    truncated = False
    stack = [top]
    rel_base = len(top.rstrip("/"))
    while stack:
        directory = stack.pop()
        dirs += 1
        try:
            it = os.scandir(directory)
        except OSError as e:
            errors += 1
            first_error = first_error or f"{directory}: {e.strerror}"
            continue
        with it:
            for entry in it:
                entries += 1
                if entries > limit:
                    truncated = True
                    break
                if progress is not None and entries % progress_every == 0 and progress(entries, files) is False:
                    raise ScanCancelled()
                try:
                    st = entry.stat(follow_symlinks=False)  # lstat: never follows a symlink
                except OSError as e:
                    errors += 1
                    first_error = first_error or f"{entry.path}: {e.strerror}"
                    continue
                mode = st.st_mode
                if st.st_dev != root_dev:
                    # Another filesystem mounted below this one (or a bind-mounted file).
                    skipped += 1
                    continue
                if stat_mod.S_ISDIR(mode):
                    stack.append(entry.path)
                    continue
                if not stat_mod.S_ISREG(mode):
                    continue
                files += 1
                alloc = st.st_blocks * 512
                total_size += st.st_size
                total_alloc += alloc
                item = (alloc, st.st_size, entry.path, st)
                if len(largest) < keep:
                    heapq.heappush(largest, item)
                elif item[:2] > largest[0][:2]:
                    heapq.heapreplace(largest, item)
                old = (-st.st_mtime, entry.path, st)
                if len(oldest) < keep:
                    heapq.heappush(oldest, old)
                elif old[0] > oldest[0][0]:
                    heapq.heapreplace(oldest, old)
        if truncated:
            break

    def entry_of(path: str, st) -> FileEntry:
        shown = mountpoint.rstrip("/") + path[rel_base:]
        return FileEntry(shown or "/", st.st_size, st.st_blocks * 512, st.st_mtime, st.st_uid, owner_name(st.st_uid))

    return ScanResult(
        mount_key=mount_key,
        mountpoint=mountpoint,
        largest=tuple(entry_of(p, st) for _, _, p, st in sorted(largest, key=lambda x: (x[0], x[1]), reverse=True)),
        oldest=tuple(entry_of(p, st) for _, p, st in sorted(oldest, key=lambda x: x[2].st_mtime)),
        files=files,
        directories=dirs,
        total_size_bytes=total_size,
        total_allocated_bytes=total_alloc,
        skipped_mounts=skipped,
        errors=errors,
        truncated=truncated,
        limit=limit,
        first_error=first_error,
    )


# --- POSIX shared memory ---------------------------------------------------------------------

def list_posix_shm(directory: str = "/dev/shm", limit: int = POSIX_SHM_MAX) -> tuple[list[tuple[PosixShmFile, int, int]], str | None]:
    """Regular files directly in /dev/shm (glibc's shm_open(3) creates /dev/shm/NAME), with
    their (st_dev, st_ino) so holders can be matched. Returns (files, reason if unreadable)."""
    out = []
    try:
        with os.scandir(directory) as it:
            for entry in it:
                if len(out) >= limit:
                    break
                try:
                    st = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                if not stat_mod.S_ISREG(st.st_mode):
                    continue
                out.append((PosixShmFile(entry.path, st.st_size, st.st_blocks * 512, st.st_mtime, st.st_uid,
                                         owner_name(st.st_uid)), st.st_dev, st.st_ino))
    except OSError as e:
        return [], f"{directory}: {e.strerror}"
    return out, None


# --- the per-process pass --------------------------------------------------------------------

@dataclass
class _Deleted:
    path: str
    device: tuple[int, int]
    inode: int
    size: int | None = None
    allocated: int | None = None
    holders: list[Holder] = field(default_factory=list)
    reason: str | None = None


@dataclass
class _ProcessPass:
    """What one walk over the processes found; private to :func:`collect_report`."""

    memory_devices: dict[tuple[int, int], Mount]
    root: Path
    posix_ids: dict[tuple[int, int], str]
    deleted: dict[tuple[tuple[int, int], int], _Deleted] = field(default_factory=dict)
    objects: dict[tuple[int, int, int], dict] = field(default_factory=dict)  # (major, minor, inode)
    posix_holders: dict[str, list[Holder]] = field(default_factory=dict)
    sysv_attached: dict[int, set[int]] = field(default_factory=dict)
    mappings: dict[int, list[tfs.MapsEntry]] = field(default_factory=dict)  # pid -> shared-memory maps entries
    comms: dict[int, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    denied: set[int] = field(default_factory=set)  # processes whose fd table or maps we may not read
    seen: int = 0

    def comm(self, pid: int) -> str:
        name = self.comms.get(pid)
        if name is None:
            try:
                name = tfs.read_comm(pid, self.root)
            except ProcfsError:
                name = "?"
            self.comms[pid] = name
        return name

    def visit(self, pid: int) -> None:
        try:
            links = tfs.read_fd_links(pid, self.root)
        except NoSuchProcess:
            return
        except AccessDenied:
            self.denied.add(pid)
            links = []
        self.seen += 1
        for fd, target in links:
            if target.endswith(tfs.DELETED_SUFFIX):
                self._deleted_fd(pid, fd, target)
            elif target.startswith("/dev/shm/"):
                self._posix_fd(pid, fd)
        try:
            entries = tfs.read_maps(pid, self.root, interesting=tfs.deleted_or_shared,
                                    needles=tfs.DELETED_OR_SHARED_NEEDLES)
        except NoSuchProcess:
            return
        except AccessDenied:
            self.denied.add(pid)
            return
        for entry in entries:
            dev = (entry.major, entry.minor)
            if entry.deleted and dev in self.memory_devices:
                self._deleted_map(pid, entry)
            elif tfs.is_shared_memory_entry(entry):
                if entry.path.startswith("/SYSV"):
                    # ipc/shm.c newseg: the segment's file has i_ino = shmid.
                    self.sysv_attached.setdefault(entry.inode, set()).add(pid)
                else:
                    self.mappings.setdefault(pid, []).append(entry)
                    self._object_map(pid, entry)
            else:
                name = self.posix_ids.get((os.makedev(*dev), entry.inode))
                if name is not None:
                    self._add_posix_holder(name, Holder(pid, self.comm(pid), None, True))

    def _fd_stat(self, pid: int, fd: int):
        return os.stat(f"{self.root}/{pid}/fd/{fd}")  # follows the magic link to the open file

    def _deleted_fd(self, pid: int, fd: int, target: str) -> None:
        try:
            st = self._fd_stat(pid, fd)
        except OSError:
            return
        dev = (os.major(st.st_dev), os.minor(st.st_dev))
        name = target[: -len(tfs.DELETED_SUFFIX)]
        if dev in self.memory_devices:
            item = self.deleted.get((dev, st.st_ino))
            if item is None:
                item = self.deleted[(dev, st.st_ino)] = _Deleted(name, dev, st.st_ino)
            item.size, item.allocated = st.st_size, st.st_blocks * 512
            item.holders.append(Holder(pid, self.comm(pid), fd, False))
        elif name.startswith("/memfd:"):
            obj = self._object(dev, st.st_ino, "memfd", name[len("/memfd:"):])
            self._size_object(obj, st)
            obj["holders"].append(Holder(pid, self.comm(pid), fd, False))

    def _object(self, dev: tuple[int, int], inode: int, kind: str, name: str) -> dict:
        key = (dev[0], dev[1], inode)
        obj = self.objects.get(key)
        if obj is None:
            obj = self.objects[key] = {"kind": kind, "name": name, "device": f"{dev[0]}:{dev[1]}", "inode": inode,
                                       "size": None, "allocated": None, "hugetlb": False, "holders": [],
                                       "reason": None}
        return obj

    @staticmethod
    def _size_object(obj: dict, st) -> None:
        obj["size"], obj["allocated"], obj["reason"] = st.st_size, st.st_blocks * 512, None
        # MFD_HUGETLB / MAP_HUGETLB objects live on hugetlbfs: their block size is the huge
        # page size, and their pages are HugePages_*, not Shmem.
        obj["hugetlb"] = st.st_blksize > PAGE_SIZE

    def _object_map(self, pid: int, entry: tfs.MapsEntry) -> None:
        if entry.path.startswith("/memfd:"):
            kind, name = "memfd", entry.name[len("/memfd:"):]
        else:
            kind, name = "shared anon", entry.name
        obj = self._object((entry.major, entry.minor), entry.inode, kind, name)
        if not any(h.pid == pid and h.mapped for h in obj["holders"]):
            obj["holders"].append(Holder(pid, self.comm(pid), None, True))
        if obj["allocated"] is None:
            st = self._map_file_stat(pid, entry)
            if isinstance(st, str):
                obj["reason"] = st
            else:
                self._size_object(obj, st)

    def _map_file_stat(self, pid: int, entry: tfs.MapsEntry):
        """stat of the file behind a mapping through /proc/PID/map_files/START-END (man 5 proc:
        needs CAP_SYS_ADMIN), or the reason it failed."""
        try:
            return os.stat(f"{self.root}/{pid}/map_files/{entry.start:x}-{entry.end:x}")
        except OSError as e:
            return f"only mapped, and map_files is not readable ({e.strerror}; needs root)"

    def _posix_fd(self, pid: int, fd: int) -> None:
        try:
            st = self._fd_stat(pid, fd)
        except OSError:
            return
        name = self.posix_ids.get((st.st_dev, st.st_ino))
        if name is not None:
            self._add_posix_holder(name, Holder(pid, self.comm(pid), fd, False))

    def _add_posix_holder(self, name: str, holder: Holder) -> None:
        holders = self.posix_holders.setdefault(name, [])
        if not any(h.pid == holder.pid and h.fd == holder.fd and h.mapped == holder.mapped for h in holders):
            holders.append(holder)

    def _deleted_map(self, pid: int, entry: tfs.MapsEntry) -> None:
        dev = (entry.major, entry.minor)
        item = self.deleted.get((dev, entry.inode))
        if item is None:
            item = self.deleted[(dev, entry.inode)] = _Deleted(entry.name, dev, entry.inode)
        if any(h.pid == pid and h.mapped for h in item.holders):
            return
        item.holders.append(Holder(pid, self.comm(pid), None, True))
        if item.allocated is None:
            st = self._map_file_stat(pid, entry)
            if isinstance(st, str):
                item.reason = st
            else:
                item.size, item.allocated, item.reason = st.st_size, st.st_blocks * 512, None


def _read_smaps(proc: _ProcessPass, root: Path, max_processes: int, max_bytes: int,
                comm) -> tuple[list[ShmemMapping], int, int, list[str]]:
    """Full smaps for processes with memfd / shared anonymous mappings, the largest first, within
    the bounds; the others keep their maps figures (vma size) and unknown Rss."""
    out: list[ShmemMapping] = []
    warnings: list[str] = []
    read = skipped = 0
    order = sorted(proc.mappings.items(), key=lambda kv: -sum(e.size for e in kv[1]))
    for i, (pid, entries) in enumerate(order):
        figures = None
        if read < max_processes:
            try:
                figures = tfs.read_smaps_entries(pid, root, max_bytes=max_bytes)
                read += 1
                if figures is None:
                    skipped += 1
                    warnings.append(f"PID {pid}: smaps larger than {max_bytes // 2**20} MiB, not read")
            except NoSuchProcess:
                continue
            except ProcfsError as e:
                warnings.append(f"PID {pid}: {e}")
        else:
            skipped += 1
        for entry in entries:
            kind = "memfd" if entry.path.startswith("/memfd:") else "shared anon"
            name = entry.name[len("/memfd:"):] if kind == "memfd" else entry.name
            f = figures.get((entry.start, entry.end)) if figures else None
            if f is not None and f[1].kernel_page_size > PAGE_SIZE:
                continue  # hugetlb: HugePages_*, not Shmem
            out.append(ShmemMapping(pid, comm(pid), kind, name, entry.inode, entry.size,
                                    f[1].rss if f else None, f[1].pss if f else None, f[1].swap if f else None))
    return out, read, skipped, warnings


# --- the reconciliation ----------------------------------------------------------------------

def reconcile(meminfo: Mapping[str, int], mounts, sysv, objects, mappings, *,
              deleted_open=(), namespaces_unread: int = 0, smaps_skipped: int = 0,
              processes_unreadable: int = 0) -> ShmemReconciliation:
    """What explains meminfo Shmem: tmpfs files, SysV segments, memfds, shared anonymous memory,
    and what is left. Each object is counted once (mounts by device, memfds and shared
    anonymous objects by inode), so the parts do not overlap; where a part is a lower bound or
    counts swapped-out pages (which Shmem does not), it says so and the remainder is an estimate.
    """
    shmem = meminfo.get("Shmem")
    swap_used = None
    if "SwapTotal" in meminfo and "SwapFree" in meminfo:
        swap_used = meminfo["SwapTotal"] - meminfo["SwapFree"]
    parts: list[ShmemPart] = []
    notes: list[str] = []

    seen: set[str] = set()
    tmpfs_total = 0
    tmpfs_unknown = []
    outside: dict[str, list[int | None]] = {}
    for m in mounts:
        if m.device in seen:
            continue
        seen.add(m.device)
        if m.in_shmem:
            if m.used_bytes is None:
                tmpfs_unknown.append(f"{m.mountpoint}: {m.usage_reason or 'unknown'}")
            else:
                tmpfs_total += m.used_bytes
        else:
            outside.setdefault(m.fstype, []).append(m.used_bytes)
    deleted_bytes = sum(d.allocated_bytes or 0 for d in deleted_open if d.fstype in SHMEM_FSTYPES)
    note = ("statvfs used of each tmpfs/devtmpfs filesystem, once per device; it counts pages "
            "swapped out too")
    if deleted_bytes:
        note += f"; includes {deleted_bytes} bytes of deleted-but-open files"
    if tmpfs_unknown:
        note += f"; unknown for {'; '.join(tmpfs_unknown[:3])}"
    parts.append(ShmemPart("tmpfs files", tmpfs_total, "lower bound" if tmpfs_unknown else "measured",
                           "statvfs(2) on each mount in /proc/*/mountinfo", note))

    sysv_rss = [s.rss_bytes for s in sysv]
    sysv_known = [x for x in sysv_rss if x is not None]
    parts.append(ShmemPart(
        "SysV segments", sum(sysv_known) if sysv_known or not sysv_rss else None,
        "measured" if len(sysv_known) == len(sysv_rss) else "lower bound", "/proc/sysvipc/shm rss",
        f"resident pages of {counted(len(sysv), 'segment')}; SHM_HUGETLB segments are in HugePages, not Shmem, "
        "but the file does not tell them apart"))

    for kind, title in (("memfd", "memfd"), ("shared anon", "shared anonymous")):
        total, measured, lower, hugetlb = _object_bytes(kind, objects, mappings)
        if kind == "memfd":
            what = ("memfd_create(2) file", "memfd_create(2) files")
            source = ("fstat of /proc/PID/fd/N or /proc/PID/map_files/A-B (st_blocks); "
                      "smaps Rss where neither can be read")
        else:
            what = ("MAP_SHARED|MAP_ANONYMOUS object", "MAP_SHARED|MAP_ANONYMOUS objects")
            source = "fstat of /proc/PID/map_files/A-B (st_blocks); smaps Rss where it cannot be read"
        note = counted(measured, *what)
        if kind != "memfd":
            note += " (\"/dev/zero (deleted)\", [anon_shmem:], shared across fork)"
        note += " sized exactly (allocated, including swapped-out pages)"
        if lower:
            note += f"; {lower} only from the largest Rss of one mapper (pages nobody maps are missed)"
        if hugetlb:
            note += f"; {hugetlb} on huge pages left out (HugePages_*, not Shmem)"
        if processes_unreadable:
            note += f"; {counted(processes_unreadable, 'process', 'processes')} not readable: what they hold is missing"
        parts.append(ShmemPart(title, total, "lower bound" if lower or processes_unreadable else "measured",
                               source, note))

    explained = sum(p.bytes or 0 for p in parts)
    remainder = shmem - explained if shmem is not None else None
    what = ("tmpfs no process can reach: the initial rootfs (initramfs) hidden under /, mounts "
            "unmounted lazily but still open, mounts in namespaces not readable; kernel users of shmem such as GPU (DRM GEM) buffers, and shared memory "
            "in processes whose smaps was not read")
    if namespaces_unread:
        what += f"; {counted(namespaces_unread, 'mount namespace')} not readable"
    if smaps_skipped:
        what += f"; {counted(smaps_skipped, 'process', 'processes')} with shared mappings skipped by the smaps bounds"
    if processes_unreadable:
        what += f"; memfds and shared memory of {counted(processes_unreadable, 'process', 'processes')} not readable (needs root)"
    if remainder is not None and remainder < 0:
        what = ("negative: the parts exceed Shmem because tmpfs used and memfd allocated count pages "
                "swapped out" + (f" (swap in use: {swap_used} bytes)" if swap_used else "")
                + " and figures were read at slightly different moments")
    parts.append(ShmemPart("not explained", remainder, "remainder", "meminfo Shmem minus the parts above", what))
    notes.append("Shmem (meminfo) counts resident shmem pages: tmpfs and devtmpfs files, SysV segments, "
                 "memfds and shared anonymous memory all live in it, and none is in any process's RSS "
                 "unless mapped.")
    notes.append("The parts never count one object twice, but two are lower bounds and two include "
                 "swapped-out pages, so the split is an estimate.")

    outside_parts = []
    for fstype, values in sorted(outside.items()):
        known = [v for v in values if v is not None]
        source = ("statvfs(2); ramfs reports no usage (see the file scan)" if fstype == "ramfs"
                  else "statvfs(2), in huge pages (meminfo HugePages_*)")
        outside_parts.append(ShmemPart(fstype, sum(known) if known else None,
                                       "measured" if len(known) == len(values) else "lower bound", source,
                                       f"{counted(len(values), 'filesystem')}; not part of Shmem"))
    return ShmemReconciliation(shmem, tuple(parts), remainder, tuple(outside_parts), tuple(notes))


def _object_bytes(kind: str, objects, mappings) -> tuple[int, int, int, int]:
    """(bytes, objects sized exactly, objects estimated from smaps, hugetlb objects left out)."""
    total = measured = lower = hugetlb = 0
    unsized = set()
    for obj in objects:
        if obj.kind != kind:
            continue
        if obj.hugetlb:
            hugetlb += 1
        elif obj.allocated_bytes is not None:
            total += obj.allocated_bytes
            measured += 1
        else:
            unsized.add(obj.inode)
    # An object no one could fstat: the Rss of its mappings, summed per process (a process
    # may map several parts), the largest process counted.
    per_process: dict[tuple[int, int], int] = {}
    for m in mappings:
        if m.kind == kind and m.inode in unsized and m.rss_bytes is not None:
            per_process[(m.inode, m.pid)] = per_process.get((m.inode, m.pid), 0) + m.rss_bytes
    best: dict[int, int] = {}
    for (inode, _), rss in per_process.items():
        best[inode] = max(best.get(inode, 0), rss)
    total += sum(best.values())
    lower = len(unsized)
    return total, measured, lower, hugetlb


# --- one whole pass --------------------------------------------------------------------------

def collect_report(root: Path = PROC, meminfo: Mapping[str, int] | None = None, *, smaps: bool = True,
                   smaps_max_processes: int = SMAPS_MAX_PROCESSES, smaps_max_bytes: int = SMAPS_MAX_BYTES,
                   statvfs: Callable = os.statvfs, stat: Callable = os.stat,
                   posix_dir: str | None = "/dev/shm") -> TmpfsReport:
    """One pass over mounts, processes and SysV shm (see the module doc for what it costs)."""
    from memtop.procfs.system import read_meminfo

    cpu0 = time.thread_time()
    root = Path(root)
    warnings: list[str] = []
    if meminfo is None:
        try:
            meminfo = read_meminfo(root)
        except ProcfsError as e:
            warnings.append(str(e))
            meminfo = {}
    pids = list_pids(root)
    found = discover_mounts(root, pids, statvfs=statvfs, stat=stat)
    warnings.extend(found.warnings)
    memory_devices: dict[tuple[int, int], Mount] = {}
    for m in found.mounts:
        memory_devices.setdefault((m.info.major, m.info.minor), m)

    posix_files: list[tuple[PosixShmFile, int, int]] = []
    if posix_dir is not None:
        posix_files, reason = list_posix_shm(posix_dir)
        if reason:
            warnings.append(f"POSIX shm: {reason}")
    posix_ids = {(dev, ino): f.path for f, dev, ino in posix_files}

    proc = _ProcessPass(memory_devices, root, posix_ids)
    for pid in pids:
        proc.visit(pid)
    if proc.denied:
        warnings.append(f"{counted(len(proc.denied), 'process', 'processes')} whose fd table or maps is not readable "
                        "(other users' processes need root): their deleted files and shared memory are missing")

    try:
        sysv = list(tfs.read_sysvipc_shm(root))
    except NoSuchProcess:
        sysv = []  # kernel without CONFIG_SYSVIPC
    except ProcfsError as e:
        warnings.append(str(e))
        sysv = []
    sysv = tuple(replace(s, owner=owner_name(s.uid), attached_pids=tuple(sorted(proc.sysv_attached.get(s.shmid, ()))))
                 for s in sysv)

    if smaps:
        mappings, smaps_read, smaps_skipped, smaps_warnings = _read_smaps(proc, root, smaps_max_processes,
                                                                         smaps_max_bytes, proc.comm)
        warnings.extend(smaps_warnings)
    else:
        mappings, smaps_read, smaps_skipped = _read_smaps(proc, root, 0, smaps_max_bytes, proc.comm)[:3]

    deleted = []
    for item in proc.deleted.values():
        mount = memory_devices.get(item.device)
        deleted.append(DeletedOpenFile(
            path=item.path, device=f"{item.device[0]}:{item.device[1]}", inode=item.inode,
            fstype=mount.fstype if mount else None, mountpoint=mount.mountpoint if mount else None,
            size_bytes=item.size, allocated_bytes=item.allocated,
            holders=tuple(sorted(item.holders, key=lambda h: (h.pid, h.fd is None, h.fd or 0))),
            reason=item.reason))
    deleted.sort(key=lambda d: (-(d.allocated_bytes or 0), d.path))

    objects = [ShmemObject(v["kind"], v["name"], v["device"], v["inode"], v["size"], v["allocated"],
                           tuple(sorted(v["holders"], key=lambda h: (h.pid, h.fd is None, h.fd or 0))),
                           v["hugetlb"], v["reason"])
               for v in proc.objects.values()]
    objects.sort(key=lambda o: (o.kind, -(o.allocated_bytes or 0), o.name, o.inode))
    posix = tuple(replace(f, holders=tuple(proc.posix_holders.get(f.path, ()))) for f, _, _ in
                  sorted(posix_files, key=lambda t: -t[0].allocated_bytes))

    unread = sum(1 for ns in {ns for ns in found.pid_namespace.values()}
                 if ns not in {n for n, _, _ in found.namespaces})
    reconciliation = reconcile(meminfo, found.mounts, sysv, objects, mappings, deleted_open=deleted,
                               namespaces_unread=unread, smaps_skipped=smaps_skipped,
                               processes_unreadable=len(proc.denied))
    return TmpfsReport(
        mounts=tuple(found.mounts),
        namespaces=tuple(found.namespaces),
        deleted_open=tuple(deleted),
        sysv=sysv,
        posix=posix,
        objects=tuple(objects),
        mappings=tuple(sorted(mappings, key=lambda m: (-(m.rss_bytes or 0), m.pid))),
        reconciliation=reconciliation,
        processes_seen=proc.seen,
        smaps_read=smaps_read,
        smaps_skipped=smaps_skipped,
        warnings=tuple(warnings),
        cpu_s=time.thread_time() - cpu0,
    )
