"""Kernel memory files: /proc/slabinfo, /proc/net/sockstat{,6} (per network namespace),
/proc/sys/fs/file-nr, the fd table of one process, /sys/kernel/slab/*/reclaim_account.

Parsers are pure functions named after the file (``parse_slabinfo_file``); every one raises
:class:`~memtop.procfs.ParseError` with the line it could not read, never anything else.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from types import MappingProxyType
from typing import Mapping

from memtop.model.kernel import FdBreakdown, FileNr, SlabCache, SlabInfo, SockProtocol, Sockstat
from memtop.procfs import PAGE_SIZE, PROC, AccessDenied, NoSuchProcess, ParseError, read_text

SYS = Path("/sys")

# --- /proc/slabinfo -------------------------------------------------------------------------

# mm/slab_common.c print_slabinfo_header(): "slabinfo - version: 2.1"; kernels built with
# CONFIG_DEBUG_SLAB (SLAB allocator, gone since 6.8) printed "2.1 (statistics)" and appended
# ": globalstat ..." and ": cpustat ..." sections to each line. 2.0 (2.6 kernels before
# 2.6.14-ish) had the same leading columns. 1.x had a different column order: refused.
_SLAB_HEADER = re.compile(r"^slabinfo - version: (\d+)\.(\d+)\s*(\(statistics\))?\s*$")


def _count(token: str, what: str, path: str, lineno: int) -> int:
    if not token.isascii() or not token.isdigit():
        raise ParseError(path, f"line {lineno}: {what} is {token[:40]!r}, not a non-negative integer")
    return int(token)


def parse_slabinfo_file(text: str, path: str = "slabinfo", page_size: int = PAGE_SIZE) -> SlabInfo:
    """Parse /proc/slabinfo version 2.x (slabtop's columns; tunables and statistics ignored).

    A data line is ``name <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab>
    : tunables <limit> <batchcount> <sharedfactor> : slabdata <active_slabs> <num_slabs>
    <sharedavail> [: globalstat ...] [: cpustat ...]`` (mm/slab_common.c cache_show()).
    """
    lines = text.splitlines()
    if not lines:
        raise ParseError(path, "empty file (expected a 'slabinfo - version: 2.1' header)")
    match = _SLAB_HEADER.match(lines[0])
    if match is None:
        raise ParseError(path, f"line 1 is {lines[0][:60]!r}, not a 'slabinfo - version: 2.1' header")
    major, minor, statistics = match.groups()
    version = f"{int(major)}.{int(minor)}"
    if int(major) != 2:
        raise ParseError(path, f"slabinfo version {version} is not supported (memtop reads 2.x)")
    caches = []
    for lineno, line in enumerate(lines[1:], start=2):
        if not line.strip() or line.lstrip().startswith("#"):
            continue  # the column-title line, or a blank
        sections = [s.split() for s in line.split(":")]
        head = sections[0]
        if len(head) < 6:
            raise ParseError(path, f"line {lineno}: expected a name and 5 counts before ':', got {line[:80]!r}")
        name = " ".join(head[:-5])
        active_objs, num_objs, objsize, objperslab, pagesperslab = (
            _count(tok, what, path, lineno)
            for tok, what in zip(head[-5:], ("active_objs", "num_objs", "objsize", "objperslab", "pagesperslab"))
        )
        slabdata = next((s for s in sections[1:] if s and s[0] == "slabdata"), None)
        if slabdata is None or len(slabdata) < 3:
            raise ParseError(path, f"line {lineno}: no ': slabdata <active_slabs> <num_slabs> ...' section in {line[:80]!r}")
        active_slabs = _count(slabdata[1], "active_slabs", path, lineno)
        num_slabs = _count(slabdata[2], "num_slabs", path, lineno)
        caches.append(
            SlabCache(name, active_objs, num_objs, objsize, objperslab, pagesperslab, active_slabs, num_slabs, page_size)
        )
    return SlabInfo(version=version, statistics=statistics is not None, caches=tuple(caches))


def read_until_eof(path: str) -> str:
    """Read a multi-record seq_file whole.

    A read() of /proc/slabinfo returns at most one seq_file buffer (a page: ~4 KiB of ~25 KiB,
    fs/seq_file.c seq_read_iter), so a short read is not the end here: read until read() returns
    nothing. (memtop.procfs.read_bytes stops at the first short read, which is right only for
    single-record files such as stat, status or meminfo.)
    """
    try:
        with open(path, "rb") as f:  # buffered: read() loops until EOF
            return f.read().decode("utf-8", "surrogateescape")
    except (FileNotFoundError, ProcessLookupError) as e:
        raise NoSuchProcess(path) from e
    except PermissionError as e:
        raise AccessDenied(path) from e


def read_slabinfo(root: Path = PROC) -> SlabInfo:
    """/proc/slabinfo. Raises AccessDenied with the reason when not root (the file is 0400)."""
    path = f"{root}/slabinfo"
    try:
        text = read_until_eof(path)
    except AccessDenied as e:
        raise AccessDenied(path, f"{path} is readable by root only (mode 0400): run memtop as root to see slab caches") from e
    return parse_slabinfo_file(text, path)


def read_slab_reclaimable(name: str, sys_root: Path = SYS) -> bool | None:
    """Whether a cache's objects are reclaimable (SLAB_RECLAIM_ACCOUNT: counted in SReclaimable).

    /sys/kernel/slab/NAME/reclaim_account (SLUB, Documentation/ABI/testing/sysfs-kernel-slab);
    None when it cannot be read (not root, another allocator, a renamed cache).
    """
    try:
        with open(f"{sys_root}/kernel/slab/{name}/reclaim_account", "rb") as f:
            value = f.read().strip()
    except OSError:
        return None
    if value in (b"0", b"1"):
        return value == b"1"
    return None


# --- /proc/net/sockstat, sockstat6 ----------------------------------------------------------


def parse_sockstat_file(text: str, path: str = "sockstat", page_size: int = PAGE_SIZE) -> Sockstat:
    """Parse /proc/net/sockstat or sockstat6 (net/ipv4/proc.c sockstat_seq_show).

    Each line is ``NAME: key value [key value ...]``; ``sockets: used N`` is the only non-protocol
    line. TCP/UDP ``mem`` is in pages; FRAG ``memory`` is in bytes.
    """
    sockets_used = None
    protocols = []
    seen = set()
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        name, sep, rest = line.partition(":")
        name = name.strip()
        if not sep or not name or " " in name:
            raise ParseError(path, f"line {lineno}: expected 'NAME: key value ...', got {line[:80]!r}")
        tokens = rest.split()
        if not tokens or len(tokens) % 2:
            raise ParseError(path, f"line {lineno}: expected key/value pairs after '{name}:', got {rest[:80]!r}")
        counts = {}
        for key, value in zip(tokens[::2], tokens[1::2]):
            if not value.isascii() or not value.lstrip("-").isdigit() or value.count("-") > 1:
                raise ParseError(path, f"line {lineno}: {name} {key} is {value[:40]!r}, not an integer")
            counts[key] = int(value)
        if name in seen:
            raise ParseError(path, f"line {lineno}: {name} appears twice")
        seen.add(name)
        if name == "sockets":
            sockets_used = counts.get("used")
            continue
        if "mem" in counts:
            mem_bytes = counts["mem"] * page_size
        elif "memory" in counts:
            mem_bytes = counts["memory"]
        else:
            mem_bytes = None
        protocols.append(SockProtocol(name, MappingProxyType(counts), mem_bytes))
    if sockets_used is None and not protocols:
        raise ParseError(path, "no lines (expected 'sockets: used N' and protocol lines)")
    return Sockstat(sockets_used=sockets_used, protocols=tuple(protocols))


def merge_sockstat(v4: Sockstat, v6: Sockstat | None) -> Sockstat:
    if v6 is None:
        return v4
    return Sockstat(
        sockets_used=v4.sockets_used if v4.sockets_used is not None else v6.sockets_used,
        protocols=v4.protocols + v6.protocols,
    )


def read_sockstat(net_dir: str | Path) -> Sockstat:
    """sockstat and sockstat6 of ``net_dir`` (``/proc/net`` or ``/proc/PID/net``).

    sockstat6 is missing without IPv6: then only sockstat.
    """
    path4 = f"{net_dir}/sockstat"
    v4 = parse_sockstat_file(read_text(path4), path4)
    path6 = f"{net_dir}/sockstat6"
    try:
        v6 = parse_sockstat_file(read_text(path6), path6)
    except NoSuchProcess:
        if not os.path.exists(path4):
            raise
        v6 = None
    return merge_sockstat(v4, v6)


_NS_LINK = re.compile(r"^net:\[(\d+)\]$")


def read_net_ns(pid: int | str, root: Path = PROC) -> int:
    """The inode of the network namespace of a process (readlink /proc/PID/ns/net: 'net:[N]').

    Reading another user's link needs ptrace access (root): AccessDenied otherwise.
    """
    path = f"{root}/{pid}/ns/net"
    try:
        link = os.readlink(path)
    except (FileNotFoundError, ProcessLookupError) as e:
        raise NoSuchProcess(path) from e
    except PermissionError as e:
        raise AccessDenied(path) from e  # its default reason tells root from non-root
    except OSError as e:
        raise NoSuchProcess(path) from e
    match = _NS_LINK.match(link)
    if match is None:
        raise ParseError(path, f"link is {link[:60]!r}, not 'net:[inode]'")
    return int(match.group(1))


# --- /proc/sys/fs/file-nr -------------------------------------------------------------------


def parse_file_nr_file(text: str, path: str = "file-nr") -> FileNr:
    """Three numbers: allocated file handles, unused (0 since 2.6), maximum (man 5 proc_sys_fs)."""
    parts = text.split()
    if len(parts) != 3 or not all(p.isascii() and p.isdigit() for p in parts):
        raise ParseError(path, f"expected three non-negative integers, got {text[:60]!r}")
    allocated, unused, maximum = (int(p) for p in parts)
    return FileNr(allocated, unused, maximum)


def read_file_nr(root: Path = PROC) -> FileNr:
    path = f"{root}/sys/fs/file-nr"
    return parse_file_nr_file(read_text(path), path)


# --- the fd table of one process --------------------------------------------------------------


def classify_fd_link(target: str) -> str:
    """What an fd link points to: socket, pipe, anon_inode, file or other (man 5 proc_pid_fd)."""
    if target.startswith("socket:["):
        return "socket"
    if target.startswith("pipe:["):
        return "pipe"
    if target.startswith("anon_inode:"):
        return "anon_inode"
    if target.startswith("/"):
        return "file"  # regular files, devices, memfd ("/memfd:name (deleted)")
    return "other"  # e.g. "net:[...]" namespace fds, "[eventpoll]" on old kernels


def fd_breakdown_from_links(pid: int, targets: list[str | None]) -> FdBreakdown:
    """Count link targets by kind; None is a link that vanished while listing."""
    kinds = {"socket": 0, "pipe": 0, "anon_inode": 0, "file": 0, "other": 0}
    anon: dict[str, int] = {}
    deleted = unreadable = 0
    for target in targets:
        if target is None:
            unreadable += 1
            continue
        kind = classify_fd_link(target)
        kinds[kind] += 1
        if kind == "anon_inode":
            sub = target[len("anon_inode:") :].strip("[]") or "?"
            anon[sub] = anon.get(sub, 0) + 1
        elif kind == "file" and target.endswith(" (deleted)"):
            deleted += 1
    return FdBreakdown(
        pid=pid,
        total=len(targets) - unreadable,
        sockets=kinds["socket"],
        pipes=kinds["pipe"],
        files=kinds["file"],
        anon_inodes=kinds["anon_inode"],
        other=kinds["other"],
        deleted_files=deleted,
        anon_kinds=MappingProxyType(dict(sorted(anon.items(), key=lambda kv: (-kv[1], kv[0])))),
        unreadable=unreadable,
    )


def read_fd_breakdown(pid: int, root: Path = PROC) -> FdBreakdown:
    """readlink every /proc/PID/fd/N. Costs one syscall per fd: only for the selected process."""
    fd_dir = f"{root}/{pid}/fd"
    try:
        names = os.listdir(fd_dir)
    except (FileNotFoundError, ProcessLookupError) as e:
        raise NoSuchProcess(fd_dir) from e
    except PermissionError as e:
        raise AccessDenied(fd_dir) from e  # its default reason tells root from non-root
    targets: list[str | None] = []
    for name in names:
        try:
            targets.append(os.readlink(f"{fd_dir}/{name}"))
        except FileNotFoundError:
            targets.append(None)  # closed between listdir and readlink
        except PermissionError as e:
            raise AccessDenied(f"{fd_dir}/{name}") from e
        except OSError:
            targets.append(None)
    return fd_breakdown_from_links(pid, targets)


def read_socket_states(pid: int, root: Path = PROC) -> tuple[Mapping[str, int] | None, str | None]:
    """How many of the process's inet sockets are in each TCP state (UDP: NONE), through
    psutil's ``net_connections`` (it matches the fds' socket inodes against /proc/PID/net/tcp,
    tcp6, udp, udp6 of the process's own network namespace). (states, None) or (None, reason).

    CLOSE_WAIT sockets are the classic leak: the peer closed, this process never did; each holds
    its buffers and an fd. Only for the live /proc (psutil reads /proc itself)."""
    if Path(root) != Path("/proc"):
        return None, "psutil reads the live /proc only"
    import psutil  # the Kernel tab's selected process only: not on the start-up path

    try:
        connections = psutil.Process(pid).net_connections(kind="inet")
    except psutil.NoSuchProcess:
        raise NoSuchProcess(f"process {pid} exited") from None
    except psutil.AccessDenied:
        return None, "the kernel refused its fd table (run memtop as root or as its user)"
    except OSError as e:
        return None, f"net_connections: {e.strerror or e}"
    states: dict[str, int] = {}
    for c in connections:
        states[c.status] = states.get(c.status, 0) + 1
    return MappingProxyType(dict(sorted(states.items(), key=lambda kv: (-kv[1], kv[0])))), None
