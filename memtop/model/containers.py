"""Containers, pods and systemd units named from cgroup paths, and the memory of each.

:func:`container_of` is pure: a cgroup path (as /proc/PID/cgroup writes it) in, a
:class:`ContainerId` out. The layouts it knows, and where each is specified:

- **Docker**: cgroupfs driver ``/docker/<id>`` (moby daemon/oci_linux.go: default cgroup
  parent "/docker"); systemd driver ``/system.slice/docker-<id>.scope`` (runc's systemd cgroup
  manager names a container's unit ``<prefix>-<name>.scope`` from cgroupsPath
  ``slice:prefix:name``; dockerd passes ``system.slice:docker:<id>``); rootless:
  ``/user.slice/user-UID.slice/user@UID.service/user.slice/docker-<id>.scope``.
- **Kubernetes** (kubelet pkg/kubelet/cm/cgroup_manager_linux.go, qos_container_manager_linux.go):
  cgroupfs driver ``/kubepods/<qos>/pod<UID>/<container>`` with the Guaranteed class directly
  under ``/kubepods``; systemd driver ``/kubepods.slice/kubepods-<qos>.slice/
  kubepods-<qos>-pod<UID with - as _>.slice/<prefix>-<id>.scope`` (ToSystemd escapes ``-`` as
  ``_`` because ``-`` is systemd's slice separator, systemd.slice(5)). The scope prefix is the
  runtime's: ``cri-containerd`` (containerd), ``crio`` (CRI-O, ``crio-conmon-<id>.scope`` for its
  monitor), ``docker`` (dockershim / cri-dockerd). Static pods have a 32-hex UID, no dashes.
- **podman** (podman-run(1) --cgroup-parent, --cgroups; libpod/runtime_ctr.go):
  ``/machine.slice/libpod-<id>.scope`` (and ``.../libpod-<id>.scope/container`` when it runs
  systemd), its monitor ``libpod-conmon-<id>.scope``, a pod's ``machine-libpod_pod_<podid>.slice``
  (rootless: ``user-libpod_pod_<podid>.slice`` under ``user@UID.service``); cgroupfs manager
  ``/libpod_parent/libpod-<id>``.
- **LXC / LXD**: ``/lxc/<name>`` (LXC < 4), ``/lxc.payload.<name>`` and ``/lxc.monitor.<name>``
  (LXC >= 4, lxc.cgroup.dir.* in lxc.container.conf(5)).
- **systemd-machined** (systemd-machined.service(8)): ``/machine.slice/machine-<name>.scope``
  (libvirt guests, ``machinectl`` registrations), ``/machine.slice/systemd-nspawn@<name>.service``.
- **Amazon ECS**: ``/ecs/<task>/<container id>`` (ECS agent cgroup layout; Fargate 1.4 names
  containers ``<task id>-<number>``).
- **systemd units** (systemd.unit(5), systemd.special(7)): ``*.service``, ``*.scope``
  (``session-N.scope`` is a login session, ``init.scope`` PID 1 or a user manager), ``*.slice``;
  ``user@UID.service`` holds a user's own units. Unit names are unescaped (``\\x2d`` is ``-``).

The deepest container in a path wins (Docker-in-Docker, kind, a container running systemd); with
none, the deepest systemd unit; else the path itself is a plain cgroup. ``ContainerId.cgroup`` is
the container's own cgroup (a prefix of the process's path): its memory files count every
sub-cgroup the runtime made inside.

Nothing here reads a file; names from the system are kept exact (they may hold any byte and
must go through memtop.text before they are shown).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import TYPE_CHECKING, Mapping

from memtop.format import counted
from memtop.model.findings import Finding, Severity

if TYPE_CHECKING:
    from memtop.model.oom import OomSample
    from memtop.model.pressure import PsiResource

# Kinds of ContainerId.
HOST = "host"  # the root cgroup
CONTAINER = "container"
POD = "pod"  # a process in a pod's cgroup itself, outside its containers
MONITOR = "monitor"  # conmon (podman, CRI-O), lxc.monitor: the runtime's per-container helper
MACHINE = "machine"  # systemd-machined: nspawn containers, VMs
SERVICE = "service"
SESSION = "session"
SCOPE = "scope"
SLICE = "slice"
CGROUP = "cgroup"  # a cgroup no runtime or systemd convention names

QOS_CLASSES = ("guaranteed", "burstable", "besteffort")

_HEX64 = r"[0-9a-f]{64}"
_ID64 = re.compile(_HEX64)
_SCOPE_RUNTIMES = {  # systemd scope prefix (runc's "slice:prefix:name") -> runtime
    "docker": "docker",
    "cri-containerd": "containerd",
    "crio": "cri-o",
    "libpod": "podman",
}
_SCOPE_RE = re.compile(rf"^(docker|cri-containerd|crio|libpod)-({_HEX64})(?:\.scope)?$")
_MONITOR_RE = re.compile(rf"^(crio|libpod)-conmon-({_HEX64})(?:\.scope)?$")
_PODMAN_POD_RE = re.compile(rf"^(?:machine|user)-libpod_pod_({_HEX64})\.slice$")
# A Kubernetes pod cgroup: "pod<uid>" (cgroupfs) or "...kubepods[-<qos>]-pod<uid_>.slice" (systemd).
_K8S_POD_FS_RE = re.compile(r"^pod([0-9a-f]{8}(?:-[0-9a-f]{4}){3}-[0-9a-f]{12}|[0-9a-f]{32})$")
_K8S_POD_SLICE_RE = re.compile(
    r"^(?:[a-z0-9_]+-)*kubepods(?:-(burstable|besteffort))?-pod"
    r"([0-9a-f]{8}(?:_[0-9a-f]{4}){3}_[0-9a-f]{12}|[0-9a-f]{32})\.slice$")
_K8S_QOS_SLICE_RE = re.compile(r"^(?:[a-z0-9_]+-)*kubepods-(burstable|besteffort)\.slice$")
_ECS_ID_RE = re.compile(rf"^(?:{_HEX64}|[0-9a-f]{{32}}-\d+)$")
_LXC_RE = re.compile(r"^lxc\.(payload|monitor)\.(.+)$")
_MACHINE_SCOPE_RE = re.compile(r"^machine-(.+)\.scope$")
_NSPAWN_RE = re.compile(r"^systemd-nspawn@(.+)\.service$")
_USER_SLICE_RE = re.compile(r"^user-(\d+)\.slice$")
_USER_MANAGER_RE = re.compile(r"^user@(\d+)\.service$")
_SESSION_RE = re.compile(r"^session-(.+)\.scope$")
_UNIT_RE = re.compile(r"^.+\.(service|scope|slice)$")
_ESCAPE_RE = re.compile(r"\\x([0-9a-fA-F]{2})")


@dataclass(frozen=True, slots=True)
class ContainerId:
    """What a cgroup path says a process runs in.

    ``name`` is what to show: a container's name once resolved (see ``name_source``), else its
    short ID (12 hex digits, as ``docker ps`` shows), a unit's name, or the cgroup's last
    component. ``cgroup`` is the container's own cgroup path, the key to group processes by.
    """

    kind: str
    name: str
    cgroup: str
    id: str | None = None  # the runtime's full container ID; a machine's or LXC container's name
    pod_uid: str | None = None  # Kubernetes pod UID (with dashes), podman pod ID, ECS task ID
    qos: str | None = None  # Kubernetes QoS class: guaranteed, burstable, besteffort
    unit: str | None = None  # the systemd unit (unescaped) whose cgroup this is
    runtime: str | None = None  # docker, containerd, cri-o, podman, lxc, systemd-nspawn, machined, ecs
    orchestrator: str | None = None  # kubernetes, ecs, podman-pod
    uid: int | None = None  # the user of a user slice, session or user service
    name_source: str = "cgroup path"
    namespace: str | None = None  # Kubernetes namespace, once resolved
    pod_name: str | None = None  # Kubernetes pod name, once resolved

    @property
    def short_id(self) -> str | None:
        return self.id[:12] if self.id and _ID64.fullmatch(self.id) else self.id

    @property
    def label(self) -> str:
        """One line: kind and name, with the pod or the user when there is one."""
        parts = [self.runtime or self.kind, self.name]
        if self.pod_name:
            parts.append(f"pod {self.namespace + '/' if self.namespace else ''}{self.pod_name}")
        elif self.pod_uid:
            parts.append(f"pod {self.pod_uid}")
        if self.uid is not None and self.kind in (SERVICE, SESSION, SCOPE, SLICE):
            parts.append(f"uid {self.uid}")
        return " ".join(parts)


def unescape_unit(name: str) -> str:
    """A systemd unit name as written by the user: ``\\xNN`` escapes decoded (systemd-escape(1))."""
    if "\\x" not in name:
        return name
    raw = _ESCAPE_RE.sub(lambda m: chr(int(m.group(1), 16)), name)
    # The escapes are bytes: re-read them as UTF-8 (surrogateescape keeps any that is not).
    try:
        return raw.encode("latin-1").decode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # the name already held characters above U+00FF: keep as decoded
        return raw


def _split(path: str) -> list[str]:
    return [p for p in path.split("/") if p]


def _join(parts: list[str], end: int) -> str:
    return "/" + "/".join(parts[:end]) if end else "/"


def _user_of(parts: list[str], end: int) -> int | None:
    """The UID of the innermost user-UID.slice or user@UID.service at or above parts[end-1]."""
    for part in reversed(parts[:end]):
        m = _USER_MANAGER_RE.match(part) or _USER_SLICE_RE.match(part)
        if m:
            return int(m.group(1))
    return None


def _kubernetes(parts: list[str], index: int) -> tuple[str | None, str | None, int | None]:
    """(pod UID, QoS class, index of the pod component) when parts[index] sits in a pod."""
    if index == 0:
        return None, None, None
    pod = parts[index - 1]
    m = _K8S_POD_SLICE_RE.match(pod)
    if m:
        qos = m.group(1) or "guaranteed"
        return m.group(2).replace("_", "-"), qos, index - 1
    m = _K8S_POD_FS_RE.match(pod)
    if m and index >= 2:
        above = parts[index - 2]
        if above in ("burstable", "besteffort") and index >= 3 and parts[index - 3].startswith("kubepods"):
            return m.group(1), above, index - 1
        if above.startswith("kubepods"):
            return m.group(1), "guaranteed", index - 1
    return None, None, None


def _container_at(parts: list[str], i: int) -> ContainerId | None:
    """The container (or pod, monitor, machine) whose cgroup is parts[:i+1], or None."""
    part = parts[i]
    cgroup = _join(parts, i + 1)
    m = _SCOPE_RE.match(part)
    if m and (part.endswith(".scope") or m.group(1) in ("crio", "libpod")):
        runtime, cid = _SCOPE_RUNTIMES[m.group(1)], m.group(2)
        pod_uid, qos, _ = _kubernetes(parts, i)
        if pod_uid is not None:
            return ContainerId(CONTAINER, cid[:12], cgroup, id=cid, pod_uid=pod_uid, qos=qos, runtime=runtime,
                               orchestrator="kubernetes", unit=part if part.endswith(".scope") else None)
        podman_pod = _PODMAN_POD_RE.match(parts[i - 1]) if i else None
        return ContainerId(CONTAINER, cid[:12], cgroup, id=cid, runtime=runtime,
                           pod_uid=podman_pod.group(1) if podman_pod else None,
                           orchestrator="podman-pod" if podman_pod else None,
                           unit=part if part.endswith(".scope") else None, uid=_user_of(parts, i))
    m = _MONITOR_RE.match(part)
    if m:
        runtime, cid = _SCOPE_RUNTIMES[m.group(1)], m.group(2)
        pod_uid, qos, _ = _kubernetes(parts, i)
        return ContainerId(MONITOR, f"conmon {cid[:12]}", cgroup, id=cid, pod_uid=pod_uid, qos=qos, runtime=runtime,
                           orchestrator="kubernetes" if pod_uid else None,
                           unit=part if part.endswith(".scope") else None, uid=_user_of(parts, i))
    if _ID64.fullmatch(part) or (i >= 2 and parts[0] == "ecs" and _ECS_ID_RE.match(part)):
        pod_uid, qos, _ = _kubernetes(parts, i)
        if pod_uid is not None:
            # cgroupfs driver: the directory is the bare ID, whichever runtime made it.
            return ContainerId(CONTAINER, part[:12], cgroup, id=part, pod_uid=pod_uid, qos=qos,
                               orchestrator="kubernetes")
        if i >= 1 and parts[i - 1] == "docker":
            return ContainerId(CONTAINER, part[:12], cgroup, id=part, runtime="docker")
        if i >= 2 and parts[i - 2] == "ecs":
            return ContainerId(CONTAINER, part[:12], cgroup, id=part, pod_uid=parts[i - 1], runtime="ecs",
                               orchestrator="ecs")
        if i >= 1 and parts[i - 1] == "libpod_parent":
            return ContainerId(CONTAINER, part[:12], cgroup, id=part, runtime="podman")
        return None
    m = _K8S_POD_SLICE_RE.match(part)
    if m:
        uid = m.group(2).replace("_", "-")
        return ContainerId(POD, f"pod {uid}", cgroup, pod_uid=uid, qos=m.group(1) or "guaranteed",
                           orchestrator="kubernetes", unit=part)
    m = _K8S_POD_FS_RE.match(part)
    if m and i >= 1:
        pod_uid, qos, _ = _kubernetes(parts + ["x"], i + 1)
        if pod_uid is not None:
            return ContainerId(POD, f"pod {pod_uid}", cgroup, pod_uid=pod_uid, qos=qos, orchestrator="kubernetes")
    m = _PODMAN_POD_RE.match(part)
    if m:
        return ContainerId(POD, f"pod {m.group(1)[:12]}", cgroup, pod_uid=m.group(1), runtime="podman",
                           orchestrator="podman-pod", unit=part, uid=_user_of(parts, i))
    m = _LXC_RE.match(part)
    if m:
        name = m.group(2)
        kind = CONTAINER if m.group(1) == "payload" else MONITOR
        return ContainerId(kind, name if kind == CONTAINER else f"monitor {name}", cgroup, id=name, runtime="lxc")
    if i == 1 and parts[0] == "lxc":
        return ContainerId(CONTAINER, part, cgroup, id=part, runtime="lxc")
    if i >= 1 and parts[i - 1] == "machine.slice":
        m = _MACHINE_SCOPE_RE.match(part)
        if m:
            name = unescape_unit(m.group(1))
            return ContainerId(MACHINE, name, cgroup, id=name, unit=unescape_unit(part), runtime="machined")
        m = _NSPAWN_RE.match(part)
        if m:
            name = unescape_unit(m.group(1))
            return ContainerId(MACHINE, name, cgroup, id=name, unit=unescape_unit(part), runtime="systemd-nspawn")
    if i >= 1 and parts[i - 1] == "libpod_parent" and part.startswith("libpod-"):
        return None  # a non-hex name: not a container podman made
    return None


def _unit_at(parts: list[str], i: int) -> ContainerId | None:
    part = parts[i]
    m = _UNIT_RE.match(part)
    if not m:
        return None
    unit = unescape_unit(part)
    cgroup = _join(parts, i + 1)
    uid = _user_of(parts, i + 1)
    kind = {"service": SERVICE, "scope": SCOPE, "slice": SLICE}[m.group(1)]
    if kind == SCOPE and _SESSION_RE.match(part):
        kind = SESSION
    return ContainerId(kind, unit, cgroup, unit=unit, uid=uid)


def container_of(cgroup_path: str) -> ContainerId:
    """Name the container, pod, machine or systemd unit a cgroup path belongs to (see module doc)."""
    parts = _split(cgroup_path)
    if not parts:
        return ContainerId(HOST, "/", "/")
    for i in range(len(parts) - 1, -1, -1):
        found = _container_at(parts, i)
        if found is not None:
            return found
    for i in range(len(parts) - 1, -1, -1):
        found = _unit_at(parts, i)
        if found is not None:
            return found
    return ContainerId(CGROUP, parts[-1], _join(parts, len(parts)))


def with_name(container: ContainerId, name: str, source: str, **more) -> ContainerId:
    """The same container with a friendlier name (and, for Kubernetes, its pod's name)."""
    return replace(container, name=name, name_source=source, **more)


# --- memory of one container -------------------------------------------------------------------

_EMPTY: Mapping = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class SwapRoom:
    """How much anonymous and shmem memory of a cgroup the kernel could swap out now.

    The kernel reclaims anon (and shmem, tmpfs) pages only to swap: none without a swap device
    with free space, none past the cgroup's swap limit (v2 memory.swap.max, v1 the memsw limit
    minus the memory limit), none when swappiness is 0 (mm/vmscan.c get_scan_count: memcg
    reclaim with swappiness 0 scans file pages only; v1 reads memory.swappiness, v2 the global
    vm.swappiness).
    """

    bytes: int | None
    reason: str
    swappiness: int | None = None
    limit: int | None = None  # the cgroup's swap limit in bytes; None: unlimited or unknown


@dataclass(frozen=True, slots=True)
class Reclaim:
    """What the kernel can take back from a cgroup before it calls the OOM killer, and what not.

    From memory.stat's LRU lists (mm/vmscan.c shrink_lruvec): clean page cache on the file lists
    (active_file + inactive_file without file_dirty and file_writeback) is dropped; dirty and
    writeback pages only once written back; reclaimable slab (dentries, inodes: shrinkers) is
    freed; the anon lists (anonymous memory and shmem/tmpfs, which sits there) only to swap;
    ``unevictable`` (mlock, ramfs) never. ``cannot`` is memory.current minus the rest: anon and
    shmem that cannot be swapped, unevictable pages, and kernel memory other than reclaimable
    slab (stacks, page tables, unreclaimable slab, percpu, sockets). None with a reason where
    the version does not say (cgroup v1 memory.stat has no slab lines: its kernel memory all
    counts as ``cannot``, an upper bound).
    """

    file_clean: int | None
    file_dirty_writeback: int | None  # reclaimable once written back (I/O first)
    slab_reclaimable: int | None
    by_swap: int | None  # anon + shmem the swap room can take
    total: int | None  # file_clean + slab_reclaimable + by_swap (without dirty pages)
    cannot: int | None
    unknown: Mapping[str, str] = field(default_factory=lambda: _EMPTY)


# memory.stat keys, v2 name -> v1 hierarchical name (total_*): cgroup-v2.rst "memory.stat",
# cgroup-v1/memory.rst 5.2. v1 has no kernel, slab, sock, percpu, kernel_stack or pagetables lines.
SPLIT_KEYS = {
    "anon": "total_rss",
    "file": "total_cache",
    "active_anon": "total_active_anon",
    "inactive_anon": "total_inactive_anon",
    "active_file": "total_active_file",
    "inactive_file": "total_inactive_file",
    "unevictable": "total_unevictable",
    "shmem": "total_shmem",
    "file_mapped": "total_mapped_file",
    "file_dirty": "total_dirty",
    "file_writeback": "total_writeback",
    "kernel": None,
    "kernel_stack": None,
    "pagetables": None,
    "percpu": None,
    "sock": None,
    "slab_reclaimable": None,
    "slab_unreclaimable": None,
    "vmalloc": None,
    "swapcached": "total_swapcached",
    "anon_thp": "total_rss_huge",
}
_V1_LACKS = {
    "kernel": "cgroup v1 memory.stat has no kernel line (memory.kmem.usage_in_bytes is used when present)",
    "kernel_stack": "cgroup v1 memory.stat has no kernel_stack line",
    "pagetables": "cgroup v1 memory.stat has no pagetables line",
    "percpu": "cgroup v1 memory.stat has no percpu line",
    "sock": "cgroup v1 charges TCP buffers to memory.kmem.tcp.usage_in_bytes, outside memory.usage_in_bytes, "
            "and only once memory.kmem.tcp.limit_in_bytes was written",
    "slab_reclaimable": "cgroup v1 memory.stat has no slab lines",
    "slab_unreclaimable": "cgroup v1 memory.stat has no slab lines",
    "vmalloc": "cgroup v1 memory.stat has no vmalloc line",
}


def memory_split(version: int, raw_stat: Mapping[str, int], kmem_usage: int | None = None,
                 tcp_usage: int | None = None) -> tuple[dict[str, int | None], dict[str, str]]:
    """memory.stat as the split of :data:`SPLIT_KEYS` (bytes, v2 names), and why a key is None.

    v1 uses the hierarchical ``total_*`` lines (this cgroup and all below it, as v2 counts), its
    ``kernel`` is memory.kmem.usage_in_bytes and its ``sock`` memory.kmem.tcp.usage_in_bytes.
    """
    out: dict[str, int | None] = {}
    why: dict[str, str] = {}
    for key, v1_key in SPLIT_KEYS.items():
        if version == 2:
            value = raw_stat.get(key)
            if value is None:
                why[key] = f"memory.stat has no {key} line (older kernel)"
        elif key == "kernel" and kmem_usage is not None:
            value = kmem_usage
        elif key == "sock" and tcp_usage is not None:
            value = tcp_usage
        elif v1_key is None:
            value = None
            why[key] = _V1_LACKS[key]
        else:
            value = raw_stat.get(v1_key, raw_stat.get(v1_key.removeprefix("total_")))
            if value is None:
                why[key] = f"memory.stat has no {v1_key} line"
        out[key] = value
    return out, why


def reclaim_estimate(version: int, current: int | None, split: Mapping[str, int | None], swap: SwapRoom) -> Reclaim:
    """What the kernel can reclaim from a cgroup before OOM (see :class:`Reclaim`)."""
    unknown: dict[str, str] = {}
    active_file, inactive_file = split.get("active_file"), split.get("inactive_file")
    dirty, writeback = split.get("file_dirty"), split.get("file_writeback")
    file_clean = dirty_wb = None
    if None in (active_file, inactive_file, dirty, writeback):
        unknown["file_clean"] = "memory.stat lacks the file LRU or dirty/writeback lines"
    else:
        dirty_wb = dirty + writeback
        file_clean = max(0, active_file + inactive_file - dirty_wb)
    slab = split.get("slab_reclaimable")
    if slab is None:
        unknown["slab_reclaimable"] = ("cgroup v1 does not split out reclaimable slab: it counts as cannot (an upper bound)"
                                       if version == 1 else "memory.stat has no slab_reclaimable line")
    active_anon, inactive_anon = split.get("active_anon"), split.get("inactive_anon")
    by_swap = None
    if active_anon is None or inactive_anon is None:
        unknown["by_swap"] = "memory.stat lacks the anon LRU lines"
    elif swap.bytes is None:
        unknown["by_swap"] = swap.reason
    else:
        by_swap = min(active_anon + inactive_anon, swap.bytes)
    total = None
    if file_clean is not None and by_swap is not None:
        total = file_clean + (slab or 0) + by_swap
    cannot = None
    if current is None:
        unknown["cannot"] = "memory usage unknown"
    elif total is None:
        unknown["cannot"] = "what can be reclaimed is unknown"
    else:
        cannot = max(0, current - total - (dirty_wb or 0))
    return Reclaim(file_clean, dirty_wb, slab, by_swap, total, cannot, MappingProxyType(unknown))


def swap_room(*, swap_free: int | None, swappiness: int | None, swap_limit: int | None, swap_usage: int | None,
              swap_limit_name: str) -> SwapRoom:
    """The swap a cgroup could still use (see :class:`SwapRoom`); ``swap_limit`` None is unlimited."""
    def room(value, reason):
        return SwapRoom(value, reason, swappiness, swap_limit)

    if swap_free is None:
        return room(None, "SwapFree unknown")
    if swap_free == 0:
        return room(0, "no free swap (SwapFree 0 in /proc/meminfo): anon and shmem cannot be reclaimed")
    if swappiness == 0:
        return room(0, "swappiness is 0: reclaim in this cgroup takes page cache only")
    if swap_limit is None:
        return room(swap_free, f"up to SwapFree ({swap_limit_name} unlimited)")
    if swap_usage is None:
        return room(None, f"swap in use against {swap_limit_name} unknown")
    return room(max(0, min(swap_free, swap_limit - swap_usage)), f"{swap_limit_name} minus swap in use, at most SwapFree")


@dataclass(frozen=True, slots=True)
class MemberSummary:
    """The processes in a container's cgroup (or below it), from the collector's samples.

    PSS shares each page among the processes that map it: the sum is the container's share of
    what its processes map. It is not memory.current: the cgroup is charged for page cache,
    tmpfs, kernel memory and sockets no process maps, and a shared page is charged to one cgroup
    only (the first to touch it) while PSS splits it.
    """

    pids: tuple[int, ...]
    rss: int | None  # sum of VmRSS; None when no member's RSS is known
    pss: int | None  # sum over members whose PSS is known
    pss_known: int  # how many members' PSS the sum holds
    pss_missing: Mapping[int, str] = field(default_factory=lambda: _EMPTY)  # pid -> why not


def member_summary(members) -> MemberSummary:
    """Sum RSS and PSS over ProcessSamples (memtop.model.process); kernel threads are left out."""
    pids, rss, pss, known, missing = [], None, None, 0, {}
    for sample in members:
        if sample.kernel_thread:
            continue
        pids.append(sample.pid)
        if sample.rss_bytes is not None:
            rss = (rss or 0) + sample.rss_bytes
        rollup = sample.rollup
        if rollup is not None and rollup.pss is not None:
            pss = (pss or 0) + rollup.pss
            known += 1
        else:
            missing[sample.pid] = sample.rollup_reason or "smaps_rollup not read"
    return MemberSummary(tuple(sorted(pids)), rss, pss, known, MappingProxyType(missing))


@dataclass(frozen=True, slots=True)
class ContainerMemory:
    """One container's memory at one tick: the kernel's figures for its cgroup, derived views.

    ``cgroup`` is the memory cgroup read (memtop.model.pressure.CgroupMemory); ``memory_path``
    differs from the container's own cgroup when the memory controller has no cgroup for it
    (a systemd unit on a v1 host without MemoryAccounting=): then ``shared`` says the figures
    are of the enclosing cgroup. ``limit`` is the hard limit that applies, the smallest of the
    cgroup's and its ancestors' (``limit_from`` names the cgroup that set it); ``high`` the v2
    throttling threshold (v1: the soft limit, which only guides global reclaim).
    """

    container: ContainerId
    memory_path: str
    version: int
    current: int | None
    limit: int | None
    limit_from: str | None
    high: int | None
    split: Mapping[str, int | None]
    reclaim: Reclaim
    swap: SwapRoom
    members: MemberSummary
    events: Mapping[str, int]
    events_delta: Mapping[str, int]  # since the previous tick (empty on the first)
    page_cache: int | None  # file pages charged here without shmem/tmpfs (file - shmem)
    peak: int | None = None  # v2 memory.peak (5.19+), v1 max_usage_in_bytes
    # The events of the cgroup that sets ``limit`` when that is an ancestor (v2 memory.events;
    # v1 failcnt, oom_kill): where a hit limit is counted.
    limit_events: Mapping[str, int] = field(default_factory=lambda: _EMPTY)
    pressure: PsiResource | None = None  # v2 memory.pressure
    shared: str | None = None  # why the figures are of an enclosing cgroup, when they are
    unknown: Mapping[str, str] = field(default_factory=lambda: _EMPTY)

    @property
    def headroom(self) -> int | None:
        if self.current is None or self.limit is None:
            return None
        return self.limit - self.current

    @property
    def usage_fraction(self) -> float | None:
        if self.current is None or not self.limit:
            return None
        return self.current / self.limit


def events_delta(before: Mapping[str, int] | None, after: Mapping[str, int]) -> dict[str, int]:
    """Counter increases between two ticks. No previous tick: empty. A counter that went down
    means the cgroup was removed and made again under the same path: its whole value is new.
    ``under_oom`` (v1) is a state, not a counter."""
    if before is None:
        return {}
    out = {}
    for key, value in after.items():
        if key == "under_oom":
            continue
        prior = before.get(key)
        if prior is None:
            continue
        delta = value - prior if value >= prior else value
        if delta:
            out[key] = delta
    return out


@dataclass(frozen=True, slots=True)
class ContainersSample:
    """Every container seen at one tick, and which container each process is in."""

    time: float  # monotonic
    version: int | None  # of the memory hierarchy; None when no memory controller was found
    containers: tuple[ContainerMemory, ...] = ()
    by_pid: Mapping[int, ContainerId] = field(default_factory=lambda: _EMPTY)
    memory_path_by_pid: Mapping[int, str] = field(default_factory=lambda: _EMPTY)
    unknown: Mapping[str, str] = field(default_factory=lambda: _EMPTY)

    def by_cgroup(self, path: str) -> ContainerMemory | None:
        for entry in self.containers:
            if entry.container.cgroup == path:
                return entry
        return None


@dataclass(frozen=True, slots=True)
class ContainersView:
    """The containers part's result: every container's memory at this tick and what the OOM
    watch knows (memtop.model.oom.OomSample: kills seen, kill orders, time to each limit)."""

    containers: ContainersSample
    oom: OomSample | None = None


# --- plain words -----------------------------------------------------------------------------------

NEAR_LIMIT = 0.90


def _mib(value: int) -> str:
    return f"{value / 2**20:.0f} MiB"


def container_findings(entry: ContainerMemory, time_to_limit=None) -> list:
    """Why a container is near its limit, in the kernel's terms: what counts against the limit
    that no process's RSS shows, and what reclaim can still free. ``time_to_limit`` is a
    memtop.model.oom.TimeToLimit for this cgroup, or None."""
    out = []
    fraction = entry.usage_fraction
    name = entry.container.label
    if fraction is not None and fraction >= NEAR_LIMIT and entry.current is not None and entry.limit is not None:
        parts = []
        split = entry.split
        pss = entry.members.pss
        if pss is not None:
            parts.append(f"its processes' PSS is {_mib(pss)}")
        for key, words in (("shmem", "tmpfs/shared memory"), ("kernel", "kernel memory"), ("sock", "socket buffers")):
            value = split.get(key)
            if value:
                parts.append(f"{words} {_mib(value)}")
        if entry.page_cache:
            parts.append(f"page cache {_mib(entry.page_cache)}")
        reclaim = entry.reclaim
        can = (f"reclaim can still free {_mib(reclaim.total)} (clean page cache"
               + (", reclaimable slab" if reclaim.slab_reclaimable else "")
               + (", swap" if reclaim.by_swap else "") + ")") if reclaim.total is not None else "what reclaim can free is unknown"
        limit_from = f" (set by {entry.limit_from})" if entry.limit_from and entry.limit_from != entry.memory_path else ""
        severity = Severity.CRITICAL if fraction >= 0.98 else Severity.WARNING
        rest = _mib(reclaim.cannot) if reclaim.cannot is not None else "unknown"
        next_step = "raise the limit or find what grows"
        if split.get("shmem"):
            next_step = "tmpfs leaves only by swap or when its files are deleted; " + next_step
        out.append(Finding(
            severity,
            f"{name} uses {_mib(entry.current)} of its {_mib(entry.limit)} limit{limit_from}: " + "; ".join(parts)
            + f". The limit counts all of it; {can}, the rest ({rest}) only an OOM kill frees",
            next_step,
        ))
    if time_to_limit is not None and time_to_limit.seconds is not None and time_to_limit.seconds < 600:
        r2 = f", fit R² {time_to_limit.r2:.2f}" if time_to_limit.r2 is not None else ""
        out.append(Finding(
            Severity.WARNING,
            f"{name} grows {time_to_limit.slope_bytes_per_s / 2**20:.1f} MiB/s (least squares over "
            f"{counted(time_to_limit.points, 'point')} in {time_to_limit.window_s:.0f} s{r2}): at this rate it reaches its limit "
            f"in {time_to_limit.seconds:.0f} s",
            "reclaim starts there; an OOM kill follows when what it can free runs out",
        ))
    kills = entry.events_delta.get("oom_kill", 0)
    if kills:
        out.append(Finding(Severity.CRITICAL, f"the OOM killer killed {counted(kills, 'process', 'processes')} in {name} since the last tick",
                           "see the OOM events for the victim and what it held"))
    return out


def container_json(entry: ContainerMemory) -> dict:
    """One container as plain data (strings raw: pass the result through memtop.text.json_safe)."""
    c = entry.container
    reclaim = entry.reclaim
    return {
        "kind": c.kind, "name": c.name, "name_source": c.name_source, "cgroup": c.cgroup, "id": c.id,
        "runtime": c.runtime, "orchestrator": c.orchestrator, "pod_uid": c.pod_uid, "pod_name": c.pod_name,
        "namespace": c.namespace, "qos": c.qos, "unit": c.unit, "uid": c.uid,
        "memory_path": entry.memory_path, "cgroup_version": entry.version, "shared": entry.shared,
        "current": entry.current, "limit": entry.limit, "limit_from": entry.limit_from, "high": entry.high,
        "peak": entry.peak, "page_cache": entry.page_cache, "split": dict(entry.split),
        "reclaim": {"file_clean": reclaim.file_clean, "file_dirty_writeback": reclaim.file_dirty_writeback,
                    "slab_reclaimable": reclaim.slab_reclaimable, "by_swap": reclaim.by_swap,
                    "total": reclaim.total, "cannot": reclaim.cannot, "unknown": dict(reclaim.unknown)},
        "swap_room": {"bytes": entry.swap.bytes, "reason": entry.swap.reason},
        "members": {"pids": list(entry.members.pids), "rss": entry.members.rss, "pss": entry.members.pss,
                    "pss_known": entry.members.pss_known},
        "events": dict(entry.events), "events_delta": dict(entry.events_delta),
        "limit_events": dict(entry.limit_events),
        "pressure": None if entry.pressure is None else {
            "some_avg10": entry.pressure.some.avg10, "some_total_us": entry.pressure.some.total_us,
            "full_avg10": entry.pressure.full.avg10 if entry.pressure.full else None,
            "full_total_us": entry.pressure.full.total_us if entry.pressure.full else None},
        "unknown": dict(entry.unknown),
    }
