"""Which files processes hold: mapped (/proc/PID/maps) or open (/proc/PID/fd links).

The page cache tab measures these files with cachestat(2) (sources (a) and (b) of issue 6).
A file is reached by a path this process can open to the *same* file the target holds:
- its own name, when the target shares our mount namespace and the file is not deleted;
- ``/proc/PID/root/<name>`` when the target lives in another mount namespace (a container);
- ``/proc/PID/fd/N`` or ``/proc/PID/map_files/START-END`` (proc(5)) for a deleted file.
Whatever path is used, cachestat.py stats it first and opens only regular files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from memtop.model.pagecache import CachedFile
from memtop.procfs import PROC, AccessDenied, NoSuchProcess, read_bytes
from memtop.procfs.cachestat import NO_PAGE_CACHE, NO_SUCH_FILE, NOT_REGULAR, file_cache_stat, own_open_files
from memtop.procfs.process import list_pids

DELETED = " (deleted)"


@dataclass(frozen=True, slots=True)
class FileRef:
    """One file a process holds: its name and the path through which memtop can open it."""

    name: str  # as the kernel prints it, without " (deleted)"
    open_path: str
    deleted: bool
    mapped: bool
    open: bool


def parse_maps_file(data: bytes) -> list[tuple[str, str, bool]]:
    """File-backed mappings of /proc/PID/maps: (address range, path, deleted) per mapping.

    Lines are ``start-end perms offset major:minor inode path`` (man 5 proc_pid_maps); anonymous
    mappings have inode 0; pseudo paths ([heap], [stack], [vdso]) do not start with '/'. A
    path may contain spaces, so it is everything after the fifth field.
    """
    out = []
    for line in data.split(b"\n"):
        parts = line.split(None, 5)
        if len(parts) < 6 or parts[4] == b"0":
            continue
        path = parts[5].decode("utf-8", "surrogateescape")
        if not path.startswith("/"):
            continue
        deleted = path.endswith(DELETED)
        if deleted:
            path = path[: -len(DELETED)]
        out.append((parts[0].decode("ascii"), path, deleted))
    return out


def _mount_ns(pid: int | str, root: Path) -> str | None:
    try:
        return os.readlink(f"{root}/{pid}/ns/mnt")
    except OSError:
        return None


def process_file_refs(pid: int, root: Path = PROC, *, own_mnt_ns: str | None = None) -> dict[str, FileRef]:
    """The files process ``pid`` maps or holds open, by name.

    Raises NoSuchProcess when it vanished, AccessDenied when this user may not see its maps
    and fds (another user's process, without root).
    """
    base = f"{root}/{pid}"
    if own_mnt_ns is None:
        own_mnt_ns = _mount_ns("self", root)
    same_ns = _mount_ns(pid, root) == own_mnt_ns
    prefix = "" if same_ns else f"{base}/root"

    refs: dict[str, FileRef] = {}
    maps = read_bytes(f"{base}/maps")
    for address, name, deleted in parse_maps_file(maps):
        if name in refs:
            continue
        open_path = f"{base}/map_files/{address}" if deleted else prefix + name
        refs[name] = FileRef(name, open_path, deleted, mapped=True, open=False)

    try:
        fds = os.listdir(f"{base}/fd")
    except (FileNotFoundError, ProcessLookupError) as e:
        raise NoSuchProcess(f"{base}/fd") from e
    except PermissionError as e:
        if not refs:
            raise AccessDenied(f"{base}/fd") from e
        fds = []
    for fd in fds:
        link = f"{base}/fd/{fd}"
        try:
            target = os.readlink(link)
        except OSError:
            continue  # closed meanwhile
        # socket:[123], pipe:[456], anon_inode:[eventfd] are not files with page cache.
        if not target.startswith("/"):
            continue
        deleted = target.endswith(DELETED)
        if deleted:
            target = target[: -len(DELETED)]
        known = refs.get(target)
        if known is not None:
            if not known.open:
                # A deleted mapped file is reachable without root through the fd link.
                open_path = link if known.deleted else known.open_path
                refs[target] = FileRef(target, open_path, known.deleted, mapped=True, open=True)
            continue
        refs[target] = FileRef(target, link if deleted else prefix + target, deleted, mapped=False, open=True)
    return refs


@dataclass(slots=True)
class _Holder:
    ref: FileRef
    pids: set = field(default_factory=set)


@dataclass(frozen=True, slots=True)
class HeldFiles:
    """Files held by a set of processes: name -> (ref, pids), plus what could not be read."""

    files: dict
    processes_seen: int
    processes_denied: int


def held_files(pids, root: Path = PROC) -> HeldFiles:
    """The files the processes ``pids`` map or hold open (vanished ones are skipped)."""
    own = _mount_ns("self", root)
    own_pid = os.getpid() if Path(root) == PROC else None
    holders: dict[str, _Holder] = {}
    seen = denied = 0
    for pid in pids:
        try:
            refs = process_file_refs(pid, root, own_mnt_ns=own)
        except NoSuchProcess:
            continue
        except AccessDenied:
            denied += 1
            continue
        except OSError:
            continue
        if pid == own_pid:
            # memtop's sampler holds a /proc/PID/stat (as root a fd directory too) per process:
            # procfs, no page cache, yet each was stat'ed at every measuring run (~1,000-2,000
            # names at 1,000 processes). Its other files (libraries, a recording) stay listed.
            refs = {name: ref for name, ref in refs.items() if not name.startswith("/proc/")}
        seen += 1
        for name, ref in refs.items():
            holder = holders.get(name)
            if holder is None:
                holders[name] = holder = _Holder(ref)
            holder.pids.add(pid)
    return HeldFiles({k: (h.ref, frozenset(h.pids)) for k, h in holders.items()}, seen, denied)


def holders_by_inode(held: HeldFiles) -> dict[tuple[int, int], frozenset[int]]:
    """Who holds each file of ``held``, by (device, inode): a file found another way (a
    directory scan) is matched whatever name each process knows it by, in any mount namespace.
    One stat(2) of each held file (of its fd or map_files link, or its path under the holder's
    root), never an open; a file gone since the listing is left out."""
    out: dict[tuple[int, int], set[int]] = {}
    for ref, pids in held.files.values():
        try:
            st = os.stat(ref.open_path)
        except OSError:
            continue
        out.setdefault((st.st_dev, st.st_ino), set()).update(pids)
    return {key: frozenset(pids) for key, pids in out.items()}


def measure_held(held: HeldFiles, *, method: str = "auto", cancel=None) -> list[CachedFile]:
    """cachestat every held file once; two names of one inode are merged (pids united).
    ``cancel``: a callable; when it returns True the files measured so far are returned."""
    by_inode: dict[tuple[int, int], CachedFile] = {}
    unknown: list[CachedFile] = []
    own = own_open_files()
    for name, (ref, pids) in held.files.items():
        if cancel is not None and cancel():
            break
        display = name + DELETED if ref.deleted else name
        stat = file_cache_stat(ref.open_path, method=method, name=display, own=own)
        if stat.device is None:
            if stat.reason and stat.reason.endswith((NOT_REGULAR, NO_PAGE_CACHE)):
                # /dev/null, a FIFO named by path, /proc/PID/stat (memtop itself holds one per
                # process, issue 17): not page cache, and not worth a row.
                continue
            if stat.reason == NO_SUCH_FILE:
                # The name went away since the listing (renamed or removed; a held
                # /proc/PID/stat whose process exited): dropped like a vanished process.
                continue
            unknown.append(CachedFile(stat, tuple(sorted(pids))))
            continue
        key = (stat.device, stat.inode)
        known = by_inode.get(key)
        if known is not None:
            pids = set(pids) | set(known.pids)
            stat = known.stat
        by_inode[key] = CachedFile(stat, tuple(sorted(pids)))
    return list(by_inode.values()) + unknown


def process_cached_files(pid: int, root: Path = PROC, *, method: str = "auto",
                         holders: HeldFiles | None = None) -> list[CachedFile]:
    """Source (a): the files one process maps or holds open, measured. Each file's pids are
    every process of ``holders`` (:func:`held_files` of all processes) that holds it too, so
    that a shared library counts all its users, not only the selected process.

    Raises NoSuchProcess / AccessDenied (see :func:`process_file_refs`).
    """
    refs = process_file_refs(pid, root)

    def pids_of(name: str) -> frozenset:
        entry = holders.files.get(name) if holders is not None else None
        return frozenset({pid}) | (entry[1] if entry is not None else frozenset())

    held = HeldFiles({name: (ref, pids_of(name)) for name, ref in refs.items()}, 1, 0)
    return measure_held(held, method=method)


def system_cached_files(root: Path = PROC, *, method: str = "auto", cancel=None) -> tuple[list[CachedFile], HeldFiles]:
    """Source (b): the files any process maps or holds open, measured."""
    held = held_files(list_pids(root), root)
    return measure_held(held, method=method, cancel=cancel), held
