"""Containers on this host: which cgroup each process is in, friendlier names for container IDs,
and the memory figures of each container's cgroup (cgroup v2, or the v1 memory controller).

What the collector calls: :class:`ContainerCollector` ``.collect(processes, meminfo=...)`` once
per tick, with the ProcessSamples it already has; it returns a frozen
:class:`memtop.model.containers.ContainersSample`.

Names: the cgroup path names a container by ID only. Where the runtime keeps a name on this host
in a root-owned file, it is read (read-only, links never followed, size bounded, see
memtop/procfs/safefiles.py):

- Docker: ``/var/lib/docker/containers/<id>/config.v2.json`` ("Name", and the io.kubernetes.*
  labels dockershim set). Docker's data-root moved elsewhere (daemon.json) is not looked for.
- podman (rootful) and CRI-O: containers-storage's
  ``/var/lib/containers/storage/overlay-containers/containers.json`` ("names"; CRI-O's are
  ``k8s_<container>_<pod>_<namespace>_<uid>_<attempt>``). Rootless podman keeps it in the user's
  home, which root does not read for names: those stay IDs.
- Kubernetes: the pod's name and namespace are not on the host in any runtime file memtop reads
  (containerd keeps them in a bolt database; the API server has them). The kubelet's log
  directories carry them in their names: ``/var/log/pods/<namespace>_<pod>_<uid>/`` and
  ``/var/log/containers/<pod>_<namespace>_<container>-<id>.log``; only these directory listings
  are read (no file in them, no link followed). A kubelet with another log directory, or a host
  where /var/log is writable by a group (Ubuntu: syslog), leaves pods named by UID.
"""

from __future__ import annotations

import heapq
import json
import os
import re
import time
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType
from typing import Iterable, Mapping

from memtop.model.containers import (
    CONTAINER,
    MONITOR,
    ContainerId,
    ContainerMemory,
    ContainersSample,
    SwapRoom,
    container_of,
    events_delta,
    member_summary,
    memory_split,
    reclaim_estimate,
    swap_room,
    with_name,
)
from memtop.model.pressure import CgroupMemory
from memtop.procfs import CLOCK_TICKS, PROC, AccessDenied, NoSuchProcess, ParseError, ProcfsError, read_text
from memtop.procfs.cgroup import (
    MemoryHierarchy,
    locate_memory_hierarchy,
    parse_cgroup_file,
    parse_limit_value,
    read_cgroup_memory,
)
from memtop.procfs.safefiles import Refused, list_beneath, read_beneath
from memtop.procfs.system import read_meminfo, read_uptime

# --- which cgroup a process is in ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProcessCgroups:
    """A process's cgroup paths: in the memory hierarchy (figures) and the one that names it best.

    On a cgroup v1 host the memory controller may hold a process in a parent of its unit
    (systemd creates per-unit memory cgroups only with MemoryAccounting=), while the name=systemd
    hierarchy (and, on hybrid hosts, the unified one) has the full unit path.
    """

    memory: str | None
    naming: tuple[str, ...]  # other hierarchies' paths, most specific first


def parse_process_cgroups(text: str, version: int, path: str = "cgroup") -> ProcessCgroups:
    """/proc/PID/cgroup: the memory path (v2: the ``0::`` line; v1: the line listing ``memory``)
    and the naming candidates (``0::`` and ``name=systemd``)."""
    memory = None
    naming = []
    for line in parse_cgroup_file(text, path):
        if version == 2 and line.hierarchy_id == 0 and not line.controllers:
            memory = line.path
        elif version == 1 and "memory" in line.controllers:
            memory = line.path
        if (line.hierarchy_id == 0 and not line.controllers) or "name=systemd" in line.controllers:
            naming.append(line.path)
    naming.sort(key=lambda p: -len([c for c in p.split("/") if c]))
    return ProcessCgroups(memory, tuple(naming))


_NAMED_KINDS = frozenset(("container", "pod", "monitor", "machine", "service", "session", "scope"))


def name_process(cgroups: ProcessCgroups) -> tuple[ContainerId, str | None]:
    """(container, memory path) of a process: its memory path names it when that path holds a
    container or unit; else the most specific naming path does (see ProcessCgroups)."""
    memory = cgroups.memory
    if memory is not None:
        found = container_of(memory)
        if found.kind in _NAMED_KINDS:
            return found, memory
    for candidate in cgroups.naming:
        found = container_of(candidate)
        if found.kind in _NAMED_KINDS:
            return found, memory
    if memory is not None:
        return container_of(memory), memory
    return container_of(cgroups.naming[0] if cgroups.naming else "/"), None


def read_process_cgroups(pid: int, version: int, root: Path = PROC) -> ProcessCgroups:
    path = f"{root}/{pid}/cgroup"
    return parse_process_cgroups(read_text(path), version, path)


# --- names ---------------------------------------------------------------------------------------

DOCKER_CONFIG_LIMIT = 4 << 20
STORAGE_JSON_LIMIT = 32 << 20
LISTING_LIMIT = 20000
_K8S_POD_DIR_RE = re.compile(r"^([a-z0-9-]{1,253})_([a-z0-9.-]{1,253})_([0-9a-f-]{32,36})$")
_K8S_LOG_RE = re.compile(r"^([a-z0-9.-]{1,253})_([a-z0-9-]{1,253})_([a-z0-9-]{1,253})-([0-9a-f]{64})\.log$")
_CRIO_NAME_RE = re.compile(r"^k8s_([^_]+)_([^_]+)_([^_]+)_([0-9a-f-]{32,36})_\d+$")


class ContainerNames:
    """Friendlier names for container IDs, read from the runtimes' files (see the module doc).

    Each source is read at most once per ``refresh_s`` seconds (a new container ID seen makes it
    due at once, still no more often than ``min_interval_s``); results are cached by ID. Every
    failure leaves the name as it was and is kept in :attr:`unknown` by source.
    """

    def __init__(self, host_root: str = "/", *, refresh_s: float = 60.0, min_interval_s: float = 5.0,
                 clock=time.monotonic):
        self.host_root = host_root
        self.refresh_s = refresh_s
        self.min_interval_s = min_interval_s
        self._clock = clock
        self._docker: dict[str, tuple[str, dict] | None] = {}
        self._storage: dict[str, str] = {}
        self._storage_key = None
        self._storage_read_at: float | None = None
        self._pods: dict[str, tuple[str, str]] = {}  # uid -> (namespace, pod)
        self._k8s_containers: dict[str, str] = {}  # container id -> container name
        self._k8s_read_at: float | None = None
        self.unknown: dict[str, str] = {}

    def _due(self, read_at: float | None, new_id: bool) -> bool:
        if read_at is None:
            return True
        age = self._clock() - read_at
        return age >= self.refresh_s or (new_id and age >= self.min_interval_s)

    def _docker_config(self, cid: str) -> tuple[str, dict] | None:
        if cid in self._docker:
            return self._docker[cid]
        result = None
        try:
            read = read_beneath(self.host_root, f"var/lib/docker/containers/{cid}/config.v2.json",
                                limit=DOCKER_CONFIG_LIMIT, trusted_owner=True)
            doc = json.loads(read.data)
            name = doc.get("Name") if isinstance(doc, dict) else None
            labels = ((doc.get("Config") or {}).get("Labels") or {}) if isinstance(doc, dict) else {}
            if isinstance(name, str) and name.strip("/"):
                result = (name.lstrip("/"), labels if isinstance(labels, dict) else {})
            self.unknown.pop("docker", None)
        except Refused as e:
            if not e.missing:
                self.unknown["docker"] = e.reason
        except (ValueError, UnicodeDecodeError) as e:
            self.unknown["docker"] = f"config.v2.json of {cid[:12]} is not JSON: {e}"
        if len(self._docker) > 4096:
            self._docker.clear()
        self._docker[cid] = result
        return result

    def _refresh_storage(self) -> None:
        self._storage_read_at = self._clock()
        try:
            read = read_beneath(self.host_root, "var/lib/containers/storage/overlay-containers/containers.json",
                                limit=STORAGE_JSON_LIMIT, trusted_owner=True)
        except Refused as e:
            self._storage = {}
            if e.missing:
                self.unknown.pop("containers-storage", None)
            else:
                self.unknown["containers-storage"] = e.reason
            return
        key = (read.inode, read.mtime_ns, read.size)
        if key == self._storage_key:
            return
        try:
            entries = json.loads(read.data)
        except (ValueError, UnicodeDecodeError) as e:
            self.unknown["containers-storage"] = f"containers.json is not JSON: {e}"
            return
        names = {}
        for entry in entries if isinstance(entries, list) else []:
            if not isinstance(entry, dict):
                continue
            cid, found = entry.get("id"), entry.get("names")
            if isinstance(cid, str) and isinstance(found, list) and found and isinstance(found[0], str):
                names[cid] = found[0]
        self._storage, self._storage_key = names, key
        self.unknown.pop("containers-storage", None)

    def _refresh_kubernetes(self) -> None:
        self._k8s_read_at = self._clock()
        pods: dict[str, tuple[str, str]] = {}
        containers: dict[str, str] = {}
        try:
            for entry in list_beneath(self.host_root, "var/log/pods", limit=LISTING_LIMIT, trusted_owner=True):
                m = _K8S_POD_DIR_RE.match(entry)
                if m:
                    pods[m.group(3)] = (m.group(1), m.group(2))
            for entry in list_beneath(self.host_root, "var/log/containers", limit=LISTING_LIMIT, trusted_owner=True):
                m = _K8S_LOG_RE.match(entry)
                if m:
                    containers[m.group(4)] = m.group(3)
            self.unknown.pop("kubernetes", None)
        except Refused as e:
            if not e.missing:
                self.unknown["kubernetes"] = e.reason
        self._pods, self._k8s_containers = pods, containers

    def resolve(self, container: ContainerId) -> ContainerId:
        """``container`` with a name from its runtime's files when one is found, else as it was."""
        if container.kind not in (CONTAINER, "pod", MONITOR) or (container.id is None and container.pod_uid is None):
            return container
        cid = container.id
        if container.orchestrator == "kubernetes":
            new = (cid is not None and cid not in self._k8s_containers) or container.pod_uid not in self._pods
            if self._due(self._k8s_read_at, new):
                self._refresh_kubernetes()
            more = {}
            pod = self._pods.get(container.pod_uid)
            if pod is not None:
                more = {"namespace": pod[0], "pod_name": pod[1]}
            name = self._k8s_containers.get(cid) if cid else None
            if container.kind == "pod" and pod is not None:
                return with_name(container, f"{pod[0]}/{pod[1]}", "/var/log/pods", **more)
            if name is not None and container.kind == CONTAINER:
                return with_name(container, name, "/var/log/containers", **more)
            if more:
                container = replace(container, **more)
        if cid is None:
            return container
        if container.runtime == "docker" and container.kind == CONTAINER:
            found = self._docker_config(cid)
            if found is not None:
                name, labels = found
                k8s_name = labels.get("io.kubernetes.container.name")
                more = {}
                if isinstance(labels.get("io.kubernetes.pod.name"), str):
                    namespace = labels.get("io.kubernetes.pod.namespace")
                    more = {"pod_name": labels["io.kubernetes.pod.name"],
                            "namespace": namespace if isinstance(namespace, str) else None}
                if isinstance(k8s_name, str):
                    return with_name(container, k8s_name, "docker config.v2.json labels", **more)
                return with_name(container, name, "docker config.v2.json", **more)
        if container.runtime in ("podman", "cri-o") and container.uid is None:
            if self._due(self._storage_read_at, cid not in self._storage):
                self._refresh_storage()
            name = self._storage.get(cid)
            if name is not None:
                m = _CRIO_NAME_RE.match(name)
                if m:
                    return with_name(container, m.group(1), "containers-storage containers.json",
                                     pod_name=m.group(2), namespace=m.group(3))
                prefix = "conmon " if container.kind == MONITOR else ""
                return with_name(container, prefix + name, "containers-storage containers.json")
        return container


# --- one container's memory ----------------------------------------------------------------------


def _read_int(path: Path) -> int | None:
    try:
        return parse_limit_value(read_text(path), str(path))
    except (ProcfsError, OSError):
        return None


def effective_limit(hierarchy: MemoryHierarchy, memory: CgroupMemory) -> tuple[int | None, str | None, str | None]:
    """(limit, the cgroup that sets it, why unknown): the smallest hard limit of the cgroup and
    its ancestors, the one the kernel enforces (try_charge walks page counters up to the root).

    v1 writes it in memory.stat as hierarchical_memory_limit; v2 has no such line, so the
    ancestors' memory.max files are read.
    """
    if memory.version == 1:
        value = memory.raw_stat.get("hierarchical_memory_limit")
        if value is None:
            return memory.max, memory.path if memory.max is not None else None, "no hierarchical_memory_limit in memory.stat"
        limit = parse_limit_value(str(value))
        if limit is None:
            return None, None, None
        # Which cgroup: the nearest whose own limit_in_bytes is that figure.
        path = memory.path
        while True:
            directory = hierarchy.directory_of(path)
            if directory is None:
                break
            if _read_int(directory / "memory.limit_in_bytes") == limit:
                return limit, path, None
            if path in ("", "/"):
                break
            path = path.rsplit("/", 1)[0] or "/"
        return limit, None, None
    best, best_from = memory.max, memory.path if memory.max is not None else None
    path = memory.path
    while path not in ("", "/"):
        path = path.rsplit("/", 1)[0] or "/"
        directory = hierarchy.directory_of(path)
        if directory is None or path in ("", "/"):
            break
        value = _read_int(directory / "memory.max")
        if value is not None and (best is None or value < best):
            best, best_from = value, path
    return best, best_from, None


def container_swap_room(hierarchy: MemoryHierarchy, memory: CgroupMemory, meminfo: Mapping[str, int],
                        root: Path = PROC) -> SwapRoom:
    """How much of the cgroup's anon and shmem could go to swap now (see SwapRoom)."""
    directory = hierarchy.directory_of(memory.path)
    swap_free = meminfo.get("SwapFree")
    if memory.version == 2:
        # cgroup v2 has no memory.swappiness: mem_cgroup_swappiness() returns vm.swappiness.
        swappiness = _read_int(Path(f"{root}/sys/vm/swappiness"))
        return swap_room(swap_free=swap_free, swappiness=swappiness, swap_limit=memory.swap_max,
                         swap_usage=memory.swap_current, swap_limit_name="memory.swap.max")
    swappiness = _read_int(directory / "memory.swappiness") if directory is not None else None
    limit = None
    if memory.memsw_limit is not None and memory.max is not None:
        limit = max(0, memory.memsw_limit - memory.max)
    return swap_room(swap_free=swap_free, swappiness=swappiness, swap_limit=limit, swap_usage=memory.swap_current,
                     swap_limit_name="memory.memsw.limit_in_bytes - memory.limit_in_bytes")


def read_container_memory(hierarchy: MemoryHierarchy, container: ContainerId, memory_path: str, members,
                          meminfo: Mapping[str, int], previous: ContainerMemory | None = None,
                          root: Path = PROC) -> ContainerMemory:
    """The figures of one container (see ContainerMemory). ``members``: its ProcessSamples.

    Raises NoSuchProcess when the cgroup is gone.
    """
    memory = read_cgroup_memory(hierarchy, memory_path, detail=True)
    unknown = dict(memory.unknown)
    directory = hierarchy.directory_of(memory_path)
    kmem = tcp = None
    peak = memory.max_usage
    if memory.version == 1:
        kmem = memory.stat.get("kernel")
        tcp = _read_int(directory / "memory.kmem.tcp.usage_in_bytes") if directory is not None else None
    else:
        peak = _read_int(directory / "memory.peak") if directory is not None else None
        if peak is None:
            unknown["peak"] = "no memory.peak (Linux 5.19+)"
    split, why = memory_split(memory.version, memory.raw_stat, kmem, tcp)
    for key, reason in why.items():
        unknown[f"split.{key}"] = reason
    if memory.version == 1 and tcp is not None:
        unknown["split.sock"] = ("v1: TCP buffers only (memory.kmem.tcp.usage_in_bytes), charged apart from "
                                 "memory.usage_in_bytes and only once memory.kmem.tcp.limit_in_bytes was written")
    limit, limit_from, why_limit = effective_limit(hierarchy, memory)
    if why_limit:
        unknown["limit"] = why_limit
    if "max" in memory.unknown:
        unknown["limit"] = memory.unknown["max"]
    limit_events: Mapping[str, int] = {}
    if limit_from is not None and limit_from != memory_path:
        try:
            limit_events = read_cgroup_memory(hierarchy, limit_from, detail=False).events
        except NoSuchProcess:
            unknown["limit_events"] = f"{limit_from} vanished"
    swap = container_swap_room(hierarchy, memory, meminfo, root)
    reclaim = reclaim_estimate(memory.version, memory.current, split, swap)
    page_cache = None
    if split.get("file") is not None and split.get("shmem") is not None:
        page_cache = max(0, split["file"] - split["shmem"])
    high = memory.high if memory.version == 2 else memory.soft_limit
    shared = None
    if memory_path != container.cgroup and not memory_path.startswith(container.cgroup.rstrip("/") + "/"):
        shared = (f"the memory controller has no cgroup for {container.cgroup} (on cgroup v1 systemd makes one only "
                  f"with MemoryAccounting=yes): these are the figures of {memory_path}, shared with whatever else is in it")
    return ContainerMemory(
        container=container, memory_path=memory_path, version=memory.version, current=memory.current,
        limit=limit, limit_from=limit_from, high=high, split=MappingProxyType(split), reclaim=reclaim, swap=swap,
        members=member_summary(members), events=memory.events,
        events_delta=MappingProxyType(events_delta(previous.events if previous is not None else None, memory.events)),
        page_cache=page_cache, peak=peak, limit_events=MappingProxyType(dict(limit_events)),
        pressure=memory.pressure, shared=shared,
        unknown=MappingProxyType(unknown))


# --- the collector's entry point -----------------------------------------------------------------


class ContainerCollector:
    """Groups processes by container and reads each container's memory, one tick at a time.

    /proc/PID/cgroup is read once per process (by identity), again ``membership_s`` seconds later
    when the process is younger than twice that (a supervisor may move a process just after
    starting it), and then every ``settled_s`` seconds: processes rarely change cgroup (``docker
    exec`` and ``systemd-run --scope`` place a new process, which is new anyway), and reading
    every process every 30 s cost ~0.25 % of a core at 3,000 processes (py-spy; issue 20). The
    intervals are spread by PID over half to one and a half times their length, so that
    processes first seen together are not read again together.

    A container whose processes all left (an OOM kill of its only process) is still read for
    ``linger_s`` seconds while its cgroup exists, so that the kill's counters are seen. Not
    thread-safe: one thread calls :meth:`collect`.
    """

    def __init__(self, root: Path = PROC, *, hierarchy: MemoryHierarchy | None = None, host_root: str = "/",
                 names: ContainerNames | None | bool = True, membership_s: float = 30.0, settled_s: float = 300.0,
                 linger_s: float = 120.0, clock=time.monotonic):
        self.root = Path(root)
        self._clock = clock
        self._hierarchy = hierarchy
        self._hierarchy_error: str | None = None
        if names is True:
            names = ContainerNames(host_root, clock=clock) if self.root == PROC else None
        self.names: ContainerNames | None = names or None
        self.membership_s, self.settled_s = membership_s, settled_s
        self.linger_s = linger_s
        # identity -> (when it is read again, its ContainerId, its memory cgroup); _due holds the
        # same times in a heap, with the identities (an entry replaced since is skipped there).
        self._membership: dict[tuple, tuple[float, ContainerId, str | None]] = {}
        self._due: list[tuple[float, tuple]] = []
        self._uptime: float | None = None  # this call's /proc/uptime, read when needed (_young)
        self._previous: ContainersSample | None = None
        # membership()'s last grouping: [the identities grouped, by_pid, memory_by_pid, group_id,
        # their names, by_pid named]; reused while no process comes or goes and no membership
        # read again differs (most ticks).
        self._grouped: list | None = None
        self._last_seen: dict[str, tuple[float, ContainerId, str]] = {}

    def hierarchy(self) -> MemoryHierarchy | None:
        if self._hierarchy is None and self._hierarchy_error is None:
            try:
                self._hierarchy = locate_memory_hierarchy(self.root)
            except ProcfsError as e:
                self._hierarchy_error = str(e)
        return self._hierarchy

    def _membership_of(self, identity, version: int, now: float) -> tuple[ContainerId, str | None] | None:
        cached = self._membership.get(identity)
        if cached is not None and now < cached[0]:
            return cached[1], cached[2]
        try:
            cgroups = read_process_cgroups(identity.pid, version, self.root)
        except (NoSuchProcess, ParseError):
            self._membership.pop(identity, None)
            return None
        except AccessDenied:
            return None
        container, memory_path = name_process(cgroups)
        # Spread by PID: 0.5 to 1.5 times the interval (Knuth's multiplicative hash).
        spread = 0.5 + ((identity.pid * 2654435761) % 1000) / 1000
        due = now + spread * (self.membership_s if cached is None and self._young(identity) else self.settled_s)
        self._membership[identity] = (due, container, memory_path)
        heapq.heappush(self._due, (due, identity))
        return container, memory_path

    def _young(self, identity) -> bool:
        """Started less than 2 * membership_s ago (or its age unknown)."""
        if self._uptime is None:
            try:
                self._uptime = read_uptime(self.root)
            except ProcfsError:
                return True
        return self._uptime - identity.start_ticks / CLOCK_TICKS < 2 * self.membership_s

    def _read_due(self, version: int, now: float) -> bool:
        """Read again the memberships that are due; whether any answer differs from the last."""
        changed = False
        due = self._due
        while due and due[0][0] <= now:
            when, identity = heapq.heappop(due)
            entry = self._membership.get(identity)
            if entry is None or entry[0] != when:
                continue  # gone, or read again since (its newer time is in the heap)
            if self._membership_of(identity, version, now) != entry[1:]:
                changed = True
        return changed

    def _group(self, processes: Iterable, hierarchy: MemoryHierarchy, now: float):
        """Which container each process is in: (by_pid, memory path by pid, the processes of each
        container cgroup, its ContainerId, the cgroup its memory is read from)."""
        by_pid: dict[int, ContainerId] = {}
        memory_by_pid: dict[int, str] = {}
        groups: dict[str, list] = {}
        group_id: dict[str, ContainerId] = {}
        group_memory: dict[str, str] = {}
        alive = set()
        for sample in processes:
            if sample.kernel_thread:
                continue
            alive.add(sample.identity)
            found = self._membership_of(sample.identity, hierarchy.version, now)
            if found is None:
                continue
            container, memory_path = found
            by_pid[sample.pid] = container
            if memory_path is not None:
                memory_by_pid[sample.pid] = memory_path
            key = container.cgroup
            groups.setdefault(key, []).append(sample)
            group_id.setdefault(key, container)
            if memory_path is not None:
                # The container's cgroup when the memory hierarchy has it, else the memory path.
                inside = memory_path == key or memory_path.startswith(key.rstrip("/") + "/")
                group_memory.setdefault(key, key if inside else memory_path)
        for stale in [k for k in self._membership if k not in alive]:
            del self._membership[stale]
        return by_pid, memory_by_pid, groups, group_id, group_memory

    def membership(self, processes: Iterable) -> ContainersSample:
        """Only which container each process is in (named): no cgroup file is read but each new
        process's /proc/PID/cgroup. What the Processes tab's Container column needs."""
        now = self._clock()
        hierarchy = self.hierarchy()
        if hierarchy is None:
            return ContainersSample(now, None, unknown=MappingProxyType({"containers": self._hierarchy_error or "?"}))
        processes = tuple(processes)
        self._uptime = None  # read when a process is read for the first time (_young)
        alive = frozenset(s.identity for s in processes if not s.kernel_thread)
        cached = self._grouped
        if self._read_due(hierarchy.version, now) or cached is None or cached[0] != alive:
            by_pid, memory_by_pid, _groups, group_id, _memory = self._group(processes, hierarchy, now)
            cached = self._grouped = [alive, by_pid, MappingProxyType(memory_by_pid), group_id, None, None]
        _alive, by_pid, memory_by_pid, group_id, drawn_names, named_by_pid = cached
        named = {key: self.names.resolve(c) for key, c in group_id.items()} if self.names is not None else None
        if named_by_pid is None or named != drawn_names:
            # The same mapping object while nothing changed: the Processes tab redraws its rows
            # only when the mapping it holds is replaced.
            named_by_pid = MappingProxyType(
                {pid: named.get(c.cgroup, c) for pid, c in by_pid.items()} if named is not None else by_pid)
            cached[4:] = [named, named_by_pid]
        return ContainersSample(now, hierarchy.version, (), named_by_pid, memory_by_pid)

    def collect(self, processes: Iterable, *, meminfo: Mapping[str, int] | None = None) -> ContainersSample:
        """One tick: ``processes`` are ProcessSamples (memtop.model.process) of this tick."""
        self._grouped = None  # _group below may read memberships again: membership() regroups
        self._uptime = None
        now = self._clock()
        hierarchy = self.hierarchy()
        if hierarchy is None:
            return ContainersSample(now, None, unknown=MappingProxyType({"containers": self._hierarchy_error or "?"}))
        unknown: dict[str, str] = {}
        if meminfo is None:
            try:
                meminfo = read_meminfo(self.root)
            except ProcfsError as e:
                meminfo = {}
                unknown["meminfo"] = str(e)
        by_pid, memory_by_pid, groups, group_id, group_memory = self._group(processes, hierarchy, now)
        for key, container in group_id.items():
            if key in group_memory:
                self._last_seen[key] = (now, container, group_memory[key])
        for key, (seen, container, memory_path) in list(self._last_seen.items()):
            if key in group_id:
                continue
            if now - seen > self.linger_s:
                del self._last_seen[key]
                continue
            groups[key] = []
            group_id[key] = container
            group_memory[key] = memory_path
        previous = self._previous
        out = []
        for key, container in group_id.items():
            memory_path = group_memory.get(key)
            if memory_path is None:
                continue
            if self.names is not None:
                container = self.names.resolve(container)
            before = previous.by_cgroup(key) if previous is not None else None
            try:
                out.append(read_container_memory(hierarchy, container, memory_path, groups[key], meminfo, before, self.root))
            except NoSuchProcess:
                self._last_seen.pop(key, None)
                continue
        if self.names is not None:
            for source, reason in self.names.unknown.items():
                unknown[f"names.{source}"] = reason
        out.sort(key=lambda c: (-(c.current or 0), c.container.cgroup))
        named = {entry.container.cgroup: entry.container for entry in out}
        by_pid = {pid: named.get(c.cgroup, c) for pid, c in by_pid.items()}
        sample = ContainersSample(now, hierarchy.version, tuple(out), MappingProxyType(by_pid),
                                  MappingProxyType(memory_by_pid), MappingProxyType(unknown))
        self._previous = sample
        return sample


def collect_containers(processes: Iterable, root: Path = PROC, **kw) -> ContainersSample:
    """One sample without history (no event deltas): ``ContainerCollector(root, **kw).collect``."""
    return ContainerCollector(root, **kw).collect(processes)


__all__ = ["ContainerCollector", "ContainerNames", "ProcessCgroups", "collect_containers", "container_swap_room",
           "effective_limit", "name_process", "parse_process_cgroups", "read_container_memory",
           "read_process_cgroups"]
