"""Readers and parsers for RAM held by files: mountinfo, /proc/sysvipc/shm, maps, smaps entries
of shared memory, fd links.

Parsers are pure functions named after the file; readers take the proc root and raise the
errors of :mod:`memtop.procfs`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import NamedTuple

from memtop.model.tmpfs import MountInfoLine, SysvSegment
from memtop.procfs import PROC, AccessDenied, NoSuchProcess, ParseError, read_bytes, read_text

DELETED_SUFFIX = " (deleted)"

_OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")


def unescape_mount_field(text: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as \\040 \\011 \\012 \\134
    (fs/proc_namespace.c: seq_escape with " \\t\\n\\\\")."""
    return _OCTAL_ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), text)


def parse_mountinfo_file(text: str, path: str = "mountinfo") -> tuple[MountInfoLine, ...]:
    """Parse /proc/PID/mountinfo (man 5 proc_pid_mountinfo).

    ``36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue``: the
    optional fields end at the ``-`` separator.
    """
    out = []
    for line in text.splitlines():
        if not line.strip():
            continue
        fields = line.split(" ")
        try:
            sep = fields.index("-", 6)
            major, minor = fields[2].split(":")
            out.append(
                MountInfoLine(
                    mount_id=int(fields[0]),
                    parent_id=int(fields[1]),
                    major=int(major),
                    minor=int(minor),
                    root=unescape_mount_field(fields[3]),
                    mountpoint=unescape_mount_field(fields[4]),
                    options=fields[5],
                    fstype=fields[sep + 1],
                    source=unescape_mount_field(fields[sep + 2]),
                    super_options=fields[sep + 3] if len(fields) > sep + 3 else "",
                )
            )
        except (ValueError, IndexError) as e:
            raise ParseError(path, f"unexpected mountinfo line {line[:120]!r}") from e
    return tuple(out)


def read_mountinfo(pid: int | str = "self", root: Path = PROC) -> tuple[MountInfoLine, ...]:
    path = f"{root}/{pid}/mountinfo"
    return parse_mountinfo_file(read_text(path), path)


_SYSV_COLUMNS = ("key", "shmid", "perms", "size", "cpid", "lpid", "nattch", "uid", "gid", "cuid", "cgid",
                 "atime", "dtime", "ctime")


def parse_sysvipc_shm_file(text: str, path: str = "sysvipc/shm") -> tuple[SysvSegment, ...]:
    """Parse /proc/sysvipc/shm (ipc/shm.c sysvipc_shm_proc_show). Columns are found by the
    header's names; ``rss`` and ``swap`` (bytes, since Linux 2.6.x) are None when absent."""
    lines = text.splitlines()
    if not lines:
        return ()
    header = lines[0].split()
    missing = [c for c in _SYSV_COLUMNS if c not in header]
    if missing:
        raise ParseError(path, f"header lacks {', '.join(missing)}: {lines[0][:120]!r}")
    index = {name: i for i, name in enumerate(header)}
    out = []
    for line in lines[1:]:
        fields = line.split()
        if not fields:
            continue
        if len(fields) < len(header):
            raise ParseError(path, f"short line {line[:120]!r}")
        try:
            get = lambda name: int(fields[index[name]])  # noqa: E731
            opt = lambda name: int(fields[index[name]]) if name in index else None  # noqa: E731
            out.append(
                SysvSegment(
                    key=get("key"),
                    shmid=get("shmid"),
                    perms=int(fields[index["perms"]], 8),  # printed with %4o
                    size_bytes=get("size"),
                    cpid=get("cpid"),
                    lpid=get("lpid"),
                    nattch=get("nattch"),
                    uid=get("uid"),
                    gid=get("gid"),
                    cuid=get("cuid"),
                    cgid=get("cgid"),
                    atime=get("atime"),
                    dtime=get("dtime"),
                    ctime=get("ctime"),
                    rss_bytes=opt("rss"),
                    swap_bytes=opt("swap"),
                )
            )
        except ValueError as e:
            raise ParseError(path, f"bad line {line[:120]!r}") from e
    return tuple(out)


def read_sysvipc_shm(root: Path = PROC) -> tuple[SysvSegment, ...]:
    path = f"{root}/sysvipc/shm"
    return parse_sysvipc_shm_file(read_text(path), path)


class MapsEntry(NamedTuple):
    """One line of /proc/PID/maps (man 5 proc_pid_maps). ``dev`` is hex major:minor there."""

    start: int
    end: int
    perms: str
    offset: int
    major: int
    minor: int
    inode: int
    path: str  # may end in " (deleted)"; empty for anonymous private memory

    @property
    def size(self) -> int:
        return self.end - self.start

    @property
    def deleted(self) -> bool:
        return self.path.endswith(DELETED_SUFFIX)

    @property
    def name(self) -> str:
        return self.path[: -len(DELETED_SUFFIX)] if self.deleted else self.path

    @property
    def shared(self) -> bool:
        return self.perms[3:4] == "s"


def _parse_maps_line(line: str, path: str) -> MapsEntry:
    # The path is everything after the 5th field; it may contain spaces (padding before it).
    parts = line.split(None, 5)
    try:
        start, end = parts[0].split("-")
        major, minor = parts[3].split(":")
        return MapsEntry(int(start, 16), int(end, 16), parts[1], int(parts[2], 16), int(major, 16),
                         int(minor, 16), int(parts[4]), parts[5] if len(parts) > 5 else "")
    except (ValueError, IndexError) as e:
        raise ParseError(path, f"unexpected maps line {line[:120]!r}") from e


def is_shared_memory_entry(entry: MapsEntry) -> bool:
    """The mappings whose pages are shmem outside any visible mount: memfds, SysV segments and
    shared anonymous memory (MAP_SHARED|MAP_ANONYMOUS is a "/dev/zero (deleted)" shmem file,
    mm/shmem.c shmem_zero_setup; "[anon_shmem:NAME]" once named with PR_SET_VMA_ANON_NAME)."""
    name = entry.path
    return name.startswith(("/memfd:", "/SYSV", "/dev/zero (deleted)", "[anon_shmem:"))


DELETED_OR_SHARED_NEEDLES = (DELETED_SUFFIX, "/dev/shm/", "[anon_shmem:")


def parse_maps_file(text: str, path: str = "maps", *, interesting=None, needles=None) -> list[MapsEntry]:
    """Parse /proc/PID/maps; with ``interesting(path_text) -> bool``, keep only lines whose path
    passes (the test runs on the raw text first, so uninteresting lines cost no parsing). With
    ``needles``, a text containing none of them is skipped whole (most processes map no
    deleted file: one substring search instead of a loop over their lines)."""
    if needles is not None and not any(n in text for n in needles):
        return []
    out = []
    for line in text.splitlines():
        if not line:
            continue
        if interesting is not None:
            # No field before the path holds "/" or "[": the first one starts the path.
            cuts = [i for i in (line.find("/"), line.find("[")) if i >= 0]
            tail = line[min(cuts):] if cuts else ""
            if not interesting(tail):
                continue
        out.append(_parse_maps_line(line, path))
    return out


def deleted_or_shared(tail: str) -> bool:
    """The maps lines the tmpfs view wants: deleted files and shared-memory objects."""
    return tail.endswith(DELETED_SUFFIX) or tail.startswith(("/dev/shm/", "[anon_shmem:"))


def read_maps(pid: int, root: Path = PROC, *, interesting=None, needles=None) -> list[MapsEntry]:
    path = f"{root}/{pid}/maps"
    return parse_maps_file(read_text(path), path, interesting=interesting, needles=needles)


class SmapsFigures(NamedTuple):
    rss: int
    pss: int
    swap: int
    kernel_page_size: int


def parse_smaps_file_entries(text: str, path: str = "smaps", *, wanted=is_shared_memory_entry) -> dict[tuple[int, int], tuple[MapsEntry, SmapsFigures]]:
    """The smaps figures (Rss, Pss, Swap, KernelPageSize, bytes) of the mappings ``wanted``
    selects, keyed by (start, end). Other mappings' lines are skipped without parsing."""
    out: dict[tuple[int, int], tuple[MapsEntry, SmapsFigures]] = {}
    current: MapsEntry | None = None
    figures: dict[str, int] = {}

    def flush():
        if current is not None:
            out[(current.start, current.end)] = (current, SmapsFigures(
                figures.get("Rss", 0), figures.get("Pss", 0), figures.get("Swap", 0),
                figures.get("KernelPageSize", 4096)))

    for line in text.splitlines():
        words = line.split(None, 1)
        if not words:
            continue
        first = words[0]
        if first.endswith(":"):
            if current is None:
                continue
            key = first[:-1]
            if key in ("Rss", "Pss", "Swap", "KernelPageSize"):
                parts = line.split()
                try:
                    figures[key] = int(parts[1]) * 1024
                except (IndexError, ValueError) as e:
                    raise ParseError(path, f"bad line {line[:120]!r}") from e
            continue
        if "-" not in first:
            continue
        flush()
        entry = _parse_maps_line(line, path)
        current = entry if wanted(entry) else None
        figures = {}
    flush()
    return out


def read_smaps_entries(pid: int, root: Path = PROC, *, wanted=is_shared_memory_entry, max_bytes: int | None = None):
    """Read /proc/PID/smaps (expensive: walks the page tables of every mapping) and keep the
    ``wanted`` entries. ``max_bytes`` bounds the text read; None when the bound cut it short."""
    path = f"{root}/{pid}/smaps"
    if max_bytes is None:
        return parse_smaps_file_entries(read_text(path), path, wanted=wanted)
    try:
        with open(path, "rb", buffering=0) as f:
            data = f.read(max_bytes + 1)
            # One read() returns at most a page of seq_file output: loop until the bound.
            chunks = [data]
            total = len(data)
            while data and total <= max_bytes:
                data = f.read(max_bytes + 1 - total)
                chunks.append(data)
                total += len(data)
    except (FileNotFoundError, ProcessLookupError) as e:
        raise NoSuchProcess(path) from e
    except PermissionError as e:
        raise AccessDenied(path) from e
    except OSError as e:
        raise NoSuchProcess(path) from e
    if total > max_bytes:
        return None
    return parse_smaps_file_entries(b"".join(chunks).decode("utf-8", "surrogateescape"), path, wanted=wanted)


def read_fd_links(pid: int, root: Path = PROC) -> list[tuple[int, str]]:
    """(fd, link target) of every open fd; fds closed while listing are skipped."""
    path = f"{root}/{pid}/fd"
    try:
        names = os.listdir(path)
    except (FileNotFoundError, ProcessLookupError) as e:
        raise NoSuchProcess(path) from e
    except PermissionError as e:
        raise AccessDenied(path, f"cannot list {path} (another user's process; needs root)") from e
    except NotADirectoryError as e:
        raise NoSuchProcess(path) from e
    out = []
    for name in names:
        try:
            out.append((int(name), os.readlink(f"{path}/{name}")))
        except (FileNotFoundError, ValueError):
            continue
        except PermissionError as e:
            raise AccessDenied(path) from e
    return out


def mount_namespace(pid: int | str, root: Path = PROC) -> int:
    """The inode of the process's mount namespace (namespaces(7): equal inodes, same namespace)."""
    path = f"{root}/{pid}/ns/mnt"
    try:
        return os.stat(path).st_ino
    except (FileNotFoundError, ProcessLookupError) as e:
        raise NoSuchProcess(path) from e
    except PermissionError as e:
        raise AccessDenied(path) from e


def read_comm(pid: int, root: Path = PROC) -> str:
    return read_bytes(f"{root}/{pid}/comm").decode("utf-8", "surrogateescape").rstrip("\n")
