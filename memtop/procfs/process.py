"""Per-process files: stat, status, smaps_rollup / smaps, cmdline, fd.

Parsers are pure functions named after the file they read (``parse_stat_file``); readers take
the proc root and raise the errors of :mod:`memtop.procfs`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from memtop.model.process import Rollup, StatFields, StatusFields
from memtop.procfs import (
    PROC,
    AccessDenied,
    NoSuchProcess,
    ParseError,
    read_bytes,
)


def list_pids(root: Path = PROC) -> list[int]:
    """PIDs of the processes (thread group leaders) under the proc root."""
    return [int(name) for name in os.listdir(root) if name.isdigit()]


def parse_stat_file(data: bytes, path: str = "stat") -> StatFields:
    """Parse /proc/PID/stat. The comm may hold spaces and parentheses: it ends at the LAST ')'."""
    try:
        open_paren = data.index(b"(")
        close_paren = data.rindex(b")")
        pid = int(data[:open_paren])
        comm = data[open_paren + 1 : close_paren].decode("utf-8", "surrogateescape")
        # Fields after comm, numbered from 3 (state) as in man 5 proc_pid_stat.
        rest = data[close_paren + 2 :].split()
        # rest[n - 3] is field n of man 5 proc_pid_stat (state is field 3).
        return StatFields(
            pid=pid,
            comm=comm,
            state=rest[0].decode(),
            ppid=int(rest[1]),
            flags=int(rest[6]),
            minflt=int(rest[7]),
            majflt=int(rest[9]),
            utime_ticks=int(rest[11]),
            stime_ticks=int(rest[12]),
            num_threads=int(rest[17]),
            start_ticks=int(rest[19]),
            vsize=int(rest[20]),
            rss_pages=int(rest[21]),
        )
    except (ValueError, IndexError) as e:
        raise ParseError(path, f"unexpected stat line: {data[:120]!r}") from e


_STATUS_KEYS = {
    "VmRSS": "rss",
    "RssAnon": "rss_anon",
    "RssFile": "rss_file",
    "RssShmem": "rss_shmem",
    "VmSwap": "swap",
    "Threads": "threads",
}


_STATUS_LINE = re.compile(rb"^(Uid|VmRSS|RssAnon|RssFile|RssShmem|VmSwap|Threads):[ \t]*(\S*)([^\n]*)", re.M)


def parse_status_file(data: bytes, path: str = "status") -> StatusFields:
    """Parse /proc/PID/status. Kernel threads and zombies have no Vm*/Rss* lines: None.

    One regular-expression pass: this file is read for every process on every tick.
    """
    values: dict[str, int | None] = dict.fromkeys(_STATUS_KEYS.values())
    uid = None
    for key, first, rest in _STATUS_LINE.findall(data):
        try:
            value = int(first)
        except ValueError as e:
            raise ParseError(path, f"bad {key.decode()} line {first + rest!r}") from e
        if key == b"Uid":
            uid = value  # the real uid, first of four
            continue
        if rest.strip() == b"kB":
            value *= 1024
        values[_STATUS_KEYS[key.decode()]] = value
    return StatusFields(uid=uid, **values)


_ROLLUP_KEYS = {
    "Rss": "rss",
    "Pss": "pss",
    "Pss_Anon": "pss_anon",
    "Pss_File": "pss_file",
    "Pss_Shmem": "pss_shmem",
    "Shared_Clean": "shared_clean",
    "Shared_Dirty": "shared_dirty",
    "Private_Clean": "private_clean",
    "Private_Dirty": "private_dirty",
    "Anonymous": "anonymous",
    "LazyFree": "lazyfree",
    "AnonHugePages": "anon_huge_pages",
    "Swap": "swap",
    "SwapPss": "swap_pss",
}


def _rollup_from_table(table: dict[str, int], source: str) -> Rollup:
    return Rollup(**{field: table.get(key) for key, field in _ROLLUP_KEYS.items()}, source=source)


_KB_LINE = re.compile(r"^(\w+):[ \t]+(\d+) kB$", re.M)


def parse_smaps_rollup_file(text: str, path: str = "smaps_rollup") -> Rollup | None:
    """Parse /proc/PID/smaps_rollup. Returns None for an empty file (kernel thread, zombie)."""
    table = {key: int(value) * 1024 for key, value in _KB_LINE.findall(text)}
    if not table:
        if text.strip() and "[rollup]" not in text:
            raise ParseError(path, f"unexpected {text[:80]!r}")
        return None
    if "Rss" not in table:
        raise ParseError(path, "no Rss line")
    return _rollup_from_table(table, "smaps_rollup")


def parse_smaps_file(text: str, path: str = "smaps") -> Rollup | None:
    """Sum /proc/PID/smaps over all mappings into the shape of smaps_rollup (psutil's fallback)."""
    totals: dict[str, int] = {}
    wanted = _ROLLUP_KEYS.keys()
    for line in text.splitlines():
        key, sep, rest = line.partition(":")
        if not sep or key not in wanted:
            continue
        parts = rest.split()
        try:
            value = int(parts[0]) * (1024 if len(parts) > 1 and parts[1] == "kB" else 1)
        except (IndexError, ValueError) as e:
            raise ParseError(path, f"bad line {line!r}") from e
        totals[key] = totals.get(key, 0) + value
    if not totals:
        return None
    return _rollup_from_table(totals, "smaps")


def read_stat(pid: int, root: Path = PROC) -> StatFields:
    path = f"{root}/{pid}/stat"
    return parse_stat_file(read_bytes(path), path)


def read_status(pid: int, root: Path = PROC) -> StatusFields:
    path = f"{root}/{pid}/status"
    return parse_status_file(read_bytes(path), path)


def read_rollup(pid: int, root: Path = PROC) -> Rollup | None:
    """smaps_rollup, falling back to summing smaps when smaps_rollup fails (psutil does the same).

    Raises AccessDenied when neither may be read by this user, NoSuchProcess when gone.
    """
    path = f"{root}/{pid}/smaps_rollup"
    try:
        return parse_smaps_rollup_file(read_bytes(path).decode("ascii", "replace"), path)
    except AccessDenied:
        raise
    except (NoSuchProcess, ParseError):
        if not os.path.exists(f"{root}/{pid}"):
            raise NoSuchProcess(path) from None
    spath = f"{root}/{pid}/smaps"
    return parse_smaps_file(read_bytes(spath).decode("ascii", "replace"), spath)


# Any user can give a process a 2 MB command line (ARG_MAX): memtop keeps its first 16 KiB (a
# screen shows 200 characters), so that a thousand such processes cannot make memtop big.
CMDLINE_LIMIT = 16384


def read_cmdline(pid: int, root: Path = PROC, limit: int = CMDLINE_LIMIT) -> str:
    """The command line with NULs as spaces (cut to ``limit`` bytes, then ``…``); empty for
    kernel threads and zombies. Bytes that are not UTF-8 are kept (surrogateescape, like every
    name memtop reads: memtop/text.py shows them as \\xNN)."""
    data = read_bytes(f"{root}/{pid}/cmdline", limit + 1)
    cut = len(data) > limit
    text = data[:limit].rstrip(b"\0").replace(b"\0", b" ").decode("utf-8", "surrogateescape")
    return text + "…" if cut else text


def fd_count_is_stat_size(release: str | None = None) -> bool:
    """Since Linux 6.2, stat("/proc/PID/fd").st_size is the number of open fds."""
    release = release or os.uname().release
    try:
        major, minor = (int(x) for x in release.split(".")[:2])
    except ValueError:
        # "6.18.44-fc" splits fine; anything odd: be safe and list the directory.
        return False
    return (major, minor) >= (6, 2)


def read_fd_count(pid: int, root: Path = PROC, *, stat_size: bool = True) -> int:
    """Number of open fds: the fd directory's st_size (cheap) or a directory listing.

    Raises AccessDenied when this user may not look at the process's fd table.
    """
    path = f"{root}/{pid}/fd"
    try:
        if stat_size:
            # The size is given without a permission check; only count what we could list.
            if os.geteuid() != 0 and not os.access(path, os.R_OK | os.X_OK):
                raise AccessDenied(path, f"cannot read {path} (owned by another user; needs root)")
            return os.stat(path).st_size
        return len(os.listdir(path))
    except (FileNotFoundError, ProcessLookupError) as e:
        raise NoSuchProcess(path) from e
    except PermissionError as e:
        raise AccessDenied(path, f"cannot read {path} (owned by another user; needs root)") from e
