"""Memory cgroups: where the memory controller is mounted, which cgroup a process is in, and
the memory files of a cgroup, for cgroup v2 with the v1 memory controller as a fallback.

v2 files (Documentation/admin-guide/cgroup-v2.rst, "Memory Interface Files"): memory.current,
.max, .high, .low, .min, .swap.current, .swap.max, memory.events, memory.stat, memory.pressure.
v1 files (Documentation/admin-guide/cgroup-v1/memory.rst): memory.usage_in_bytes,
.limit_in_bytes, .soft_limit_in_bytes, .memsw.usage_in_bytes, .memsw.limit_in_bytes, .failcnt,
.max_usage_in_bytes, memory.stat, memory.oom_control.

A captured tree (tests) keeps ``proc/`` and ``sys/`` side by side: when the proc root is not
/proc, the mount points named in ``<root>/self/mountinfo`` are looked up under
``<root>/..`` instead of ``/``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from memtop.model.pressure import CgroupMemory
from memtop.procfs import PROC, AccessDenied, NoSuchProcess, ParseError, ProcfsError, read_text
from memtop.procfs.pressure import parse_pressure_file

# v1 prints "unlimited" as PAGE_COUNTER_MAX pages in bytes (LONG_MAX rounded down to a page,
# 9223372036854771712 with 4 KiB pages); anything this large means no limit.
V1_UNLIMITED_AT = 1 << 62

# The memory.stat keys shown as the breakdown, in v2 names (all bytes).
BREAKDOWN_KEYS = ("anon", "file", "kernel", "kernel_stack", "pagetables", "sock", "shmem", "slab",
                  "slab_reclaimable", "slab_unreclaimable", "percpu", "vmalloc", "zswap",
                  "file_mapped", "file_dirty", "file_writeback", "swapcached", "anon_thp")
# v1 memory.stat (hierarchical total_* when use_hierarchy=1) -> the v2 name of the same thing.
_V1_STAT_NAMES = {
    "rss": "anon",  # v1 "rss": anonymous and swap cache memory
    "cache": "file",  # v1 "cache": page cache, including tmpfs (shmem)
    "shmem": "shmem",
    "mapped_file": "file_mapped",
    "dirty": "file_dirty",
    "writeback": "file_writeback",
    "swapcached": "swapcached",
    "rss_huge": "anon_thp",
}


@dataclass(frozen=True, slots=True)
class CgroupLine:
    """One line of /proc/PID/cgroup: ``hierarchy-ID:controller-list:cgroup-path`` (man 7 cgroups)."""

    hierarchy_id: int
    controllers: tuple[str, ...]
    path: str


@dataclass(frozen=True, slots=True)
class MemoryHierarchy:
    """Where the memory controller lives: version, the directory to read, and the cgroup path
    that directory stands for (mountinfo's root field; ``/`` outside a cgroup namespace)."""

    version: int
    directory: Path
    mount_root: str = "/"
    mount_point: str = ""  # as mountinfo names it (directory differs in a captured tree)

    def directory_of(self, cgroup_path: str) -> Path | None:
        """The directory of ``cgroup_path`` in this mount, or None when the mount cannot see it."""
        root = self.mount_root.rstrip("/")
        if root and not (cgroup_path == root or cgroup_path.startswith(root + "/")):
            return None
        rel = cgroup_path[len(root):].strip("/")
        return self.directory / rel if rel else self.directory

    def path_of(self, directory: Path) -> str:
        rel = os.path.relpath(directory, self.directory)
        rel = "" if rel == "." else rel
        return "/" + "/".join(p for p in (self.mount_root.strip("/"), rel) if p)


def parse_cgroup_file(text: str, path: str = "cgroup") -> tuple[CgroupLine, ...]:
    """/proc/PID/cgroup. v2 has ``0::/path``; v1 lines name their controllers."""
    out = []
    for raw in text.splitlines():
        if not raw:
            continue
        parts = raw.split(":", 2)
        if len(parts) != 3:
            raise ParseError(path, f"unexpected line {raw[:60]!r}")
        try:
            hid = int(parts[0])
        except ValueError:
            raise ParseError(path, f"bad hierarchy id in {raw[:60]!r}") from None
        out.append(CgroupLine(hid, tuple(c for c in parts[1].split(",") if c), parts[2]))
    return tuple(out)


@dataclass(frozen=True, slots=True)
class CgroupMount:
    mount_point: str
    fstype: str  # "cgroup" (v1) or "cgroup2"
    root: str
    super_options: tuple[str, ...]


def _unescape_mountinfo(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo (fs/proc_namespace.c).
    return field.encode().decode("unicode_escape") if "\\" in field else field


def parse_mountinfo_cgroups(text: str) -> tuple[CgroupMount, ...]:
    """The cgroup and cgroup2 mounts of a /proc/PID/mountinfo (man 5 proc_pid_mountinfo)."""
    out = []
    for raw in text.splitlines():
        left, sep, right = raw.partition(" - ")
        if not sep:
            continue
        fields = left.split()
        rfields = right.split()
        if len(fields) < 5 or len(rfields) < 3 or rfields[0] not in ("cgroup", "cgroup2"):
            continue
        out.append(CgroupMount(_unescape_mountinfo(fields[4]), rfields[0], _unescape_mountinfo(fields[3]),
                               tuple(rfields[2].split(","))))
    return tuple(out)


def host_path(root: Path, mount_point: str) -> Path:
    """Where a mount point is seen from this proc root (see the module doc on captured trees)."""
    if Path(root) == PROC:
        return Path(mount_point)
    return Path(root).parent / mount_point.lstrip("/")


def locate_memory_hierarchy(root: Path = PROC) -> MemoryHierarchy:
    """The memory controller's hierarchy: v2 when cgroup2 has the controller, else v1.

    Raises ProcfsError with the reason when neither has it.
    """
    mountinfo = f"{root}/self/mountinfo"
    mounts = parse_mountinfo_cgroups(read_text(mountinfo))
    for mount in mounts:
        if mount.fstype != "cgroup2":
            continue
        directory = host_path(root, mount.mount_point)
        try:
            controllers = read_text(directory / "cgroup.controllers").split()
        except ProcfsError:
            continue
        if "memory" in controllers:
            return MemoryHierarchy(2, directory, mount.root, mount.mount_point)
    for mount in mounts:
        if mount.fstype == "cgroup" and "memory" in mount.super_options:
            return MemoryHierarchy(1, host_path(root, mount.mount_point), mount.root, mount.mount_point)
    v2 = [m.mount_point for m in mounts if m.fstype == "cgroup2"]
    detail = f" (cgroup2 at {v2[0]} has no memory controller)" if v2 else ""
    raise ProcfsError(f"no memory cgroup controller is mounted{detail}: see {mountinfo}")


def memory_cgroup_of(pid: int, hierarchy: MemoryHierarchy, root: Path = PROC) -> str:
    """The cgroup path of ``pid`` in the memory hierarchy (/proc/PID/cgroup)."""
    path = f"{root}/{pid}/cgroup"
    lines = parse_cgroup_file(read_text(path), path)
    for line in lines:
        if hierarchy.version == 2 and line.hierarchy_id == 0 and not line.controllers:
            return line.path
        if hierarchy.version == 1 and "memory" in line.controllers:
            return line.path
    raise ParseError(path, f"no cgroup v{hierarchy.version} memory line")


# --- memory files ---------------------------------------------------------------------------------


def parse_flat_keyed_file(text: str, path: str = "?") -> dict[str, int]:
    """``key value`` lines (memory.stat, memory.events, memory.oom_control)."""
    out: dict[str, int] = {}
    for raw in text.splitlines():
        parts = raw.split()
        if not parts:
            continue
        if len(parts) != 2:
            raise ParseError(path, f"expected 'key value', got {raw[:60]!r}")
        try:
            out[parts[0]] = int(parts[1])
        except ValueError:
            raise ParseError(path, f"bad value in {raw[:60]!r}") from None
    return out


parse_memory_stat_file = parse_flat_keyed_file
parse_memory_events_file = parse_flat_keyed_file
parse_oom_control_file = parse_flat_keyed_file


def parse_limit_value(text: str, path: str = "?") -> int | None:
    """A byte value or limit: v2 writes ``max`` for no limit, v1 a huge number; both -> None."""
    value = text.strip()
    if value == "max":
        return None
    try:
        number = int(value)
    except ValueError:
        raise ParseError(path, f"expected bytes or 'max', got {value[:40]!r}") from None
    return None if number >= V1_UNLIMITED_AT else number


def v1_breakdown(raw_stat: dict[str, int], kmem_usage: int | None) -> dict[str, int]:
    """v1 memory.stat in v2 names; the hierarchical ``total_*`` counters when present."""
    out: dict[str, int] = {}
    for v1_name, v2_name in _V1_STAT_NAMES.items():
        value = raw_stat.get("total_" + v1_name, raw_stat.get(v1_name))
        if value is not None:
            out[v2_name] = value
    if kmem_usage is not None:
        out["kernel"] = kmem_usage
    return out


def v2_breakdown(raw_stat: dict[str, int]) -> dict[str, int]:
    return {k: raw_stat[k] for k in BREAKDOWN_KEYS if k in raw_stat}


class _Reader:
    """Reads files of one cgroup directory, collecting reasons for what it cannot read."""

    def __init__(self, directory: Path, is_root: bool):
        self.directory = directory
        self.is_root = is_root
        self.unknown: dict[str, str] = {}

    def text(self, name: str, key: str) -> str | None:
        path = self.directory / name
        try:
            return read_text(path)
        except NoSuchProcess:
            if self.is_root:
                self.unknown[key] = f"the root cgroup has no {name}"
            elif not self.directory.exists():
                raise
            else:
                self.unknown[key] = f"no {name} (kernel option or controller off)"
        except AccessDenied as e:
            self.unknown[key] = e.reason
        except OSError as e:
            self.unknown[key] = f"cannot read {path}: {os.strerror(e.errno or 0)}"
        return None

    def limit(self, name: str, key: str) -> int | None:
        text = self.text(name, key)
        if text is None:
            return None
        try:
            return parse_limit_value(text, str(self.directory / name))
        except ParseError as e:
            self.unknown[key] = str(e)
            return None

    def keyed(self, name: str, key: str) -> dict[str, int]:
        text = self.text(name, key)
        if text is None:
            return {}
        try:
            return parse_flat_keyed_file(text, str(self.directory / name))
        except ParseError as e:
            self.unknown[key] = str(e)
            return {}


def read_cgroup_memory(hierarchy: MemoryHierarchy, cgroup_path: str, *, detail: bool = True) -> CgroupMemory:
    """The memory figures of one cgroup.

    Without ``detail`` (the tree walk) only usage, limits and events are read: v2 memory.current,
    .max, .high, .events; v1 usage_in_bytes, limit_in_bytes, failcnt, oom_control. ``detail``
    reads every file listed in the module doc.

    Raises NoSuchProcess when the cgroup directory is gone (removed between two reads).
    """
    directory = hierarchy.directory_of(cgroup_path)
    if directory is None:
        raise NoSuchProcess(f"{cgroup_path} is outside the mount at {hierarchy.directory}")
    if not directory.is_dir():
        raise NoSuchProcess(str(directory))
    is_root = directory == hierarchy.directory and hierarchy.mount_root in ("", "/")
    r = _Reader(directory, is_root)
    if hierarchy.version == 2:
        raw_stat = r.keyed("memory.stat", "stat") if detail else {}
        pressure = None
        if detail:
            text = r.text("memory.pressure", "pressure")
            if text is not None:
                try:
                    pressure = parse_pressure_file(text, str(directory / "memory.pressure"))
                except ParseError as e:
                    r.unknown["pressure"] = str(e)
        memory = CgroupMemory(
            version=2, path=cgroup_path,
            current=r.limit("memory.current", "current"),
            max=r.limit("memory.max", "max"),
            high=r.limit("memory.high", "high"),
            low=r.limit("memory.low", "low") if detail else None,
            min=r.limit("memory.min", "min") if detail else None,
            swap_current=r.limit("memory.swap.current", "swap_current") if detail else None,
            swap_max=r.limit("memory.swap.max", "swap_max") if detail else None,
            events=MappingProxyType(r.keyed("memory.events", "events")),
            stat=MappingProxyType(v2_breakdown(raw_stat)),
            raw_stat=MappingProxyType(raw_stat),
            pressure=pressure,
            unknown=MappingProxyType(r.unknown),
        )
        return memory
    # v1
    current = r.limit("memory.usage_in_bytes", "current")
    memsw_usage = r.limit("memory.memsw.usage_in_bytes", "memsw_usage") if detail else None
    memsw_limit = r.limit("memory.memsw.limit_in_bytes", "memsw_limit") if detail else None
    swap_current = None
    if not detail:
        pass
    elif memsw_usage is not None and current is not None:
        # memsw counts memory + swap (cgroup-v1/memory.rst 2.4): the difference is swap
        # (approximately: the two files are read one after the other).
        swap_current = max(0, memsw_usage - current)
    else:
        r.unknown["swap_current"] = r.unknown.get("memsw_usage", "memory or memsw usage unknown")
    events: dict[str, int] = {}
    failcnt = r.limit("memory.failcnt", "failcnt")
    if failcnt is not None:
        events["failcnt"] = failcnt
    if detail and "memsw_usage" not in r.unknown:
        memsw_failcnt = r.limit("memory.memsw.failcnt", "memsw_failcnt")
        if memsw_failcnt is not None:
            events["memsw_failcnt"] = memsw_failcnt
    oom = r.keyed("memory.oom_control", "oom_control")
    for key in ("oom_kill", "under_oom"):
        if key in oom:
            events[key] = oom[key]
    raw_stat: dict[str, int] = {}
    stat: dict[str, int] = {}
    if detail:
        raw_stat = r.keyed("memory.stat", "stat")
        kmem = r.limit("memory.kmem.usage_in_bytes", "kernel")
        stat = v1_breakdown(raw_stat, kmem)
        # memory.stat's swap comes from one read; memsw - usage are two reads of moving counters.
        swap = raw_stat.get("total_swap", raw_stat.get("swap"))
        if swap is not None:
            swap_current = swap
            r.unknown.pop("swap_current", None)
    for key, why in (("high", "cgroup v1 has no memory.high (soft_limit_in_bytes is the nearest)"),
                     ("low", "cgroup v1 has no memory.low"),
                     ("min", "cgroup v1 has no memory.min"),
                     ("swap_max", "cgroup v1 limits memory+swap together (memsw.limit_in_bytes)"),
                     ("pressure", "cgroup v1 has no per-cgroup memory.pressure; the system PSI covers it")):
        r.unknown.setdefault(key, why)
    return CgroupMemory(
        version=1, path=cgroup_path,
        current=current,
        max=r.limit("memory.limit_in_bytes", "max"),
        swap_current=swap_current,
        events=MappingProxyType(events),
        stat=MappingProxyType(stat),
        raw_stat=MappingProxyType(raw_stat),
        soft_limit=r.limit("memory.soft_limit_in_bytes", "soft_limit") if detail else None,
        memsw_usage=memsw_usage,
        memsw_limit=memsw_limit,
        max_usage=r.limit("memory.max_usage_in_bytes", "max_usage") if detail else None,
        unknown=MappingProxyType(r.unknown),
    )


def walk_memory_cgroups(hierarchy: MemoryHierarchy, *, limit: int = 2000) -> list[CgroupMemory]:
    """Every cgroup of the memory hierarchy (usage, limits, events; no stat), parents first.

    A cgroup removed during the walk is dropped. ``limit`` bounds the walk on hosts with
    thousands of cgroups.
    """
    out: list[CgroupMemory] = []
    stack = [hierarchy.directory]
    while stack and len(out) < limit:
        directory = stack.pop()
        try:
            out.append(read_cgroup_memory(hierarchy, hierarchy.path_of(directory), detail=False))
            children = sorted((e.path for e in os.scandir(directory) if e.is_dir(follow_symlinks=False)), reverse=True)
        except (NoSuchProcess, FileNotFoundError):
            continue
        except OSError:
            continue
        stack.extend(Path(c) for c in children)
    return out
