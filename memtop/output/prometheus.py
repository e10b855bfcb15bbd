r"""The Prometheus metrics of ``memtop export``: a prometheus-client custom collector over the
latest :class:`~memtop.model.export.ExportSample`.

The sampling thread calls :meth:`MemtopCollector.publish` once per tick; it builds the metric
families once and swaps one reference. A scrape (``collect``) hands out that prebuilt list: it
never reads /proc, so 1,000 scrapes cost 1,000 text renderings and nothing else.

Conventions (https://prometheus.io/docs/practices/naming/): ``memtop_`` prefix, base units
(bytes, seconds, ratios 0-1), ``_bytes`` / ``_seconds`` suffixes, counters end in ``_total``
and hold the kernel's cumulative value (Prometheus computes rates; memtop exports none).
Every HELP text names the file the figure comes from. Every family is always exposed (HELP and
TYPE, samples when known): a figure that cannot be read is absent, never 0, and
``memtop_exporter_source_ok{source}`` says which source failed.

Label cardinality is bounded: ``pid``/``comm`` by --top N (default 20), ``cache`` by SLAB_TOP,
``mountpoint`` by MOUNT_TOP, ``cgroup`` by CGROUP_TOP; the other labels take fixed sets of values
(meminfo and vmstat field names, PSI resources, socket protocols).

Label values come from the machine (process names, mount points, devices and cgroup paths are
chosen by any user) and are shown as :func:`memtop.text.printable` makes them, cut to
LABEL_LIMIT characters: always valid UTF-8 with no control character; a byte that is not UTF-8
becomes the four characters ``\xff`` (as ``ls -b`` shows it; Prometheus then stores the value
``\xff``, the exposition escaping the backslash as ``\\xff``), an ESC ``\e``, a newline
``\n``. Two values that become the same text (a name spelling ``\xff`` with a backslash and
one holding the byte) would be one series: the first is kept, so a scrape never holds a series
twice (which Prometheus refuses, whole).
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass

from prometheus_client import generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from memtop import __version__
from memtop.model.export import SOURCES, ExportSample
from memtop.procfs import CLOCK_TICKS
from memtop.text import printable

LABEL_LIMIT = 512  # characters of one label value (a mount point may be 4,095 bytes)


@dataclass(frozen=True, slots=True)
class MetricSpec:
    name: str  # as exposed; a counter's name ends in _total
    kind: str  # "gauge" or "counter"
    labels: tuple[str, ...]
    help: str


def _g(name: str, labels: tuple[str, ...], help: str) -> MetricSpec:
    return MetricSpec(name, "gauge", labels, help)


def _c(name: str, labels: tuple[str, ...], help: str) -> MetricSpec:
    return MetricSpec(name, "counter", labels, help)


P = ("pid", "comm")

# /proc/vmstat event counters (mm/vmstat.c vmstat_text) exported as counters:
# metric name, label name (or None), help, [(kernel name, label value, scale to the base unit)].
VMSTAT_COUNTERS: tuple[tuple[str, str | None, str, tuple[tuple[str, str, int], ...]], ...] = (
    ("memtop_vmstat_paged_bytes_total", "direction",
     "Bytes read from (in) and written to (out) block devices, /proc/vmstat pgpgin/pgpgout (KiB) x 1024.",
     (("pgpgin", "in", 1024), ("pgpgout", "out", 1024))),
    ("memtop_vmstat_swapped_pages_total", "direction",
     "Pages swapped in and out, /proc/vmstat pswpin/pswpout.",
     (("pswpin", "in", 1), ("pswpout", "out", 1))),
    ("memtop_vmstat_page_faults_total", None,
     "Page faults, minor and major, /proc/vmstat pgfault.", (("pgfault", "", 1),)),
    ("memtop_vmstat_major_page_faults_total", None,
     "Major page faults (read from disk), /proc/vmstat pgmajfault.", (("pgmajfault", "", 1),)),
    ("memtop_vmstat_workingset_refault_pages_total", "type",
     "Pages faulted back in soon after eviction (thrashing), /proc/vmstat workingset_refault_anon/file.",
     (("workingset_refault_anon", "anon", 1), ("workingset_refault_file", "file", 1))),
    ("memtop_vmstat_workingset_activate_pages_total", "type",
     "Refaulted pages activated at once, /proc/vmstat workingset_activate_anon/file.",
     (("workingset_activate_anon", "anon", 1), ("workingset_activate_file", "file", 1))),
    ("memtop_vmstat_workingset_restore_pages_total", "type",
     "Refaulted pages that had been part of the working set, /proc/vmstat workingset_restore_anon/file.",
     (("workingset_restore_anon", "anon", 1), ("workingset_restore_file", "file", 1))),
    ("memtop_vmstat_pages_scanned_total", "by",
     "Pages scanned for reclaim, by kswapd, direct reclaim, khugepaged or proactive reclaim, "
     "/proc/vmstat pgscan_*.",
     tuple((f"pgscan_{w}", w, 1) for w in ("kswapd", "direct", "khugepaged", "proactive"))),
    ("memtop_vmstat_pages_reclaimed_total", "by",
     "Pages reclaimed, by kswapd, direct reclaim, khugepaged or proactive reclaim, /proc/vmstat pgsteal_*.",
     tuple((f"pgsteal_{w}", w, 1) for w in ("kswapd", "direct", "khugepaged", "proactive"))),
    ("memtop_vmstat_allocation_stalls_total", "zone",
     "Allocations that entered direct reclaim, per zone, /proc/vmstat allocstall_*.",
     tuple((f"allocstall_{z}", z, 1) for z in ("dma", "dma32", "normal", "movable", "device"))),
    ("memtop_vmstat_oom_kills_total", None,
     "Processes killed by the OOM killer, /proc/vmstat oom_kill.", (("oom_kill", "", 1),)),
    ("memtop_vmstat_compaction_stalls_total", None,
     "Allocations that stalled for memory compaction, /proc/vmstat compact_stall.", (("compact_stall", "", 1),)),
    ("memtop_vmstat_thp_faults_total", "result",
     "Transparent huge page faults served (alloc) or falling back to small pages (fallback), "
     "/proc/vmstat thp_fault_alloc/thp_fault_fallback.",
     (("thp_fault_alloc", "alloc", 1), ("thp_fault_fallback", "fallback", 1))),
    ("memtop_vmstat_lazyfree_pages_total", "stage",
     "MADV_FREE pages: marked lazily free (marked) and freed by reclaim (freed), /proc/vmstat pglazyfree/pglazyfreed.",
     (("pglazyfree", "marked", 1), ("pglazyfreed", "freed", 1))),
    ("memtop_vmstat_drop_caches_total", "kind",
     "Writes to /proc/sys/vm/drop_caches (pagecache, slab), /proc/vmstat drop_pagecache/drop_slab.",
     (("drop_pagecache", "pagecache", 1), ("drop_slab", "slab", 1))),
)

METRICS: tuple[MetricSpec, ...] = (
    # system
    _g("memtop_meminfo_bytes", ("field",),
       "System memory from /proc/meminfo, one series per kB line (field = the meminfo key), in bytes (kB x 1024)."),
    _g("memtop_meminfo_hugepages", ("field",),
       "Huge page counts from /proc/meminfo (HugePages_Total, _Free, _Rsvd, _Surp), in pages of Hugepagesize."),
    _g("memtop_processes", (), "Processes seen in /proc at the last sample."),
    # PSI
    _g("memtop_pressure_ratio", ("resource", "kind", "window"),
       "Share of time some (kind=some) or all (kind=full) tasks stalled on the resource, averaged over "
       "window (10s, 60s, 300s), 0-1: /proc/pressure/{memory,io,cpu} avg10/avg60/avg300 / 100."),
    _c("memtop_pressure_stall_seconds_total", ("resource", "kind"),
       "Total stall time, /proc/pressure/{memory,io,cpu} total (microseconds) / 1e6."),
    # vmstat
    *(_c(name, (label,) if label else (), help) for name, label, help, _keys in VMSTAT_COUNTERS),
    # slabs
    _g("memtop_slab_bytes", (), "Memory of every slab cache, /proc/slabinfo num_slabs x pagesperslab x page size, summed."),
    _g("memtop_slab_caches", (), "Slab caches listed in /proc/slabinfo."),
    _g("memtop_slab_cache_bytes", ("cache",),
       "Memory of one slab cache (the largest caches only), /proc/slabinfo num_slabs x pagesperslab x page size."),
    _g("memtop_slab_cache_active_bytes", ("cache",),
       "Memory of the active objects of one slab cache, /proc/slabinfo active_objs x objsize."),
    _g("memtop_slab_cache_objects", ("cache",), "Objects allocated in one slab cache, /proc/slabinfo num_objs."),
    _g("memtop_slab_cache_active_objects", ("cache",), "Objects in use in one slab cache, /proc/slabinfo active_objs."),
    # sockets
    _g("memtop_sockstat_sockets_used", (), "Sockets in use, /proc/net/sockstat 'sockets: used' (memtop's network namespace)."),
    _g("memtop_sockstat_sockets", ("protocol", "state"),
       "Sockets per protocol and state (inuse, orphan, tw, alloc), /proc/net/sockstat and sockstat6."),
    _g("memtop_sockstat_memory_bytes", ("protocol",),
       "Socket buffer memory per protocol, /proc/net/sockstat mem (pages x page size) or FRAG memory (bytes)."),
    # tmpfs
    _g("memtop_tmpfs_size_bytes", ("mountpoint", "fstype", "device"),
       "Size limit of a memory-backed mount (tmpfs, ramfs, hugetlbfs, devtmpfs; /proc/PID/mountinfo), statvfs(3) "
       "f_blocks x f_frsize; absent when it has no limit."),
    _g("memtop_tmpfs_used_bytes", ("mountpoint", "fstype", "device"),
       "RAM held by the files of a memory-backed mount, statvfs(3) (f_blocks - f_bfree) x f_frsize."),
    _g("memtop_tmpfs_inodes_used", ("mountpoint", "fstype", "device"), "Inodes used on a memory-backed mount, statvfs(3)."),
    # cgroups
    _g("memtop_cgroup_memory_usage_bytes", ("cgroup",),
       "Memory charged to a cgroup, memory.current (v2) or memory.usage_in_bytes (v1)."),
    _g("memtop_cgroup_memory_limit_bytes", ("cgroup",),
       "Hard memory limit of a cgroup, memory.max (v2) or memory.limit_in_bytes (v1); absent when unlimited."),
    _c("memtop_cgroup_memory_events_total", ("cgroup", "event"),
       "Memory events of a cgroup: memory.events (v2: low, high, max, oom, oom_kill, ...) or "
       "memory.failcnt and memory.oom_control oom_kill (v1)."),
    # processes (top N by RSS)
    _g("memtop_process_rss_bytes", P, "Resident set size, /proc/PID/status VmRSS (top N processes by RSS)."),
    _g("memtop_process_rss_anon_bytes", P, "Resident anonymous memory, /proc/PID/status RssAnon."),
    _g("memtop_process_rss_file_bytes", P, "Resident file-backed memory, /proc/PID/status RssFile."),
    _g("memtop_process_rss_shmem_bytes", P, "Resident shared memory (shmem, tmpfs, SysV), /proc/PID/status RssShmem."),
    _g("memtop_process_pss_bytes", P, "Proportional set size, /proc/PID/smaps_rollup Pss."),
    _g("memtop_process_uss_bytes", P, "Unique set size, /proc/PID/smaps_rollup Private_Clean + Private_Dirty."),
    _g("memtop_process_swap_bytes", P, "Swapped-out anonymous memory, /proc/PID/status VmSwap."),
    _g("memtop_process_lazyfree_bytes", P, "MADV_FREE memory the kernel may reclaim, /proc/PID/smaps_rollup LazyFree."),
    _g("memtop_process_open_fds", P, "Open file descriptors, stat(/proc/PID/fd).st_size (Linux >= 6.2) or a listing."),
    _g("memtop_process_threads", P, "Threads, /proc/PID/stat num_threads."),
    _c("memtop_process_page_faults_total", P + ("type",), "Page faults (type=minor, major), /proc/PID/stat minflt, majflt."),
    _g("memtop_process_start_time_seconds", P,
       "Start time since the epoch, /proc/PID/stat starttime / CLK_TCK + boot time (now - /proc/uptime)."),
    # allocator (--heap)
    _g("memtop_process_heap_bytes", P + ("state",),
       "glibc heap by state (in_use: malloc'd, tcache included; free: in bins and fastbins, kept by glibc; top: "
       "the top chunk), summed over arenas; the three add up to the arenas' system_mem. A read-only walk "
       "through /proc/PID/mem (memtop export --heap; the largest processes only)."),
    _g("memtop_process_heap_arenas", P, "glibc arenas of the process, from the read-only walk of /proc/PID/mem (--heap)."),
    _g("memtop_process_heap_walk_timestamp_seconds", P, "When the heap figures were read: the time of the last valid walk of /proc/PID/mem (--heap)."),
    # the exporter itself
    _g("memtop_exporter_info", ("version",), "memtop export is running (always 1)."),
    _c("memtop_exporter_samples_total", (), "Samples taken (one per --interval; scrapes never sample)."),
    _g("memtop_exporter_sample_duration_seconds", (), "Wall time the last sample took."),
    _c("memtop_exporter_sample_cpu_seconds_total", (), "CPU time (user + system) spent sampling."),
    _g("memtop_exporter_last_sample_timestamp_seconds", (), "When the last sample was taken, seconds since the epoch."),
    _g("memtop_exporter_source_ok", ("source",),
       "1 when the source could be read at the last sample, 0 when not (the exporter's log says why)."),
)
METRIC_NAMES = frozenset(spec.name for spec in METRICS)

_WINDOWS = (("10s", "avg10"), ("60s", "avg60"), ("300s", "avg300"))


def label_value(value) -> str:
    """A label value as the exposition shows it: printable, valid UTF-8, at most LABEL_LIMIT long."""
    return printable(str(value), limit=LABEL_LIMIT)


class _Families:
    def __init__(self):
        self.families: dict[str, GaugeMetricFamily | CounterMetricFamily] = {}
        self._seen: set[tuple] = set()
        for spec in METRICS:
            cls = GaugeMetricFamily if spec.kind == "gauge" else CounterMetricFamily
            self.families[spec.name] = cls(spec.name, spec.help, labels=list(spec.labels))

    def add(self, name: str, labels: tuple[str, ...] | list[str], value: float | int | None) -> None:
        if value is None:
            return
        values = [label_value(v) for v in labels]
        key = (name, *values)
        if key in self._seen:
            return  # one series per label set (two names that show the same, a name listed twice)
        self._seen.add(key)
        self.families[name].add_metric(values, value)


def metric_families(sample: ExportSample | None) -> list:
    """Every family of METRICS, filled from ``sample`` (None: before the first sample)."""
    f = _Families()
    f.add("memtop_exporter_info", (__version__,), 1)
    if sample is None:
        return list(f.families.values())

    for key, value in sample.meminfo.items():
        if key.startswith("HugePages_"):
            f.add("memtop_meminfo_hugepages", (key,), value)
        else:
            f.add("memtop_meminfo_bytes", (key,), value)
    f.add("memtop_processes", (), sample.process_count)

    if sample.pressure is not None:
        for resource, psi in sample.pressure.resources.items():
            for kind, line in (("some", psi.some), ("full", psi.full)):
                if line is None:
                    continue
                for window, attr in _WINDOWS:
                    f.add("memtop_pressure_ratio", (resource, kind, window), getattr(line, attr) / 100.0)
                f.add("memtop_pressure_stall_seconds_total", (resource, kind), line.total_us / 1e6)

    for name, label, _help, keys in VMSTAT_COUNTERS:
        for key, value_label, scale in keys:
            value = sample.vmstat.get(key)
            if value is not None:
                f.add(name, (value_label,) if label else (), value * scale)

    f.add("memtop_slab_bytes", (), sample.slab_total_bytes)
    f.add("memtop_slab_caches", (), sample.slab_cache_count)
    for cache in sample.slabs or ():
        f.add("memtop_slab_cache_bytes", (cache.name,), cache.total_bytes)
        f.add("memtop_slab_cache_active_bytes", (cache.name,), cache.active_bytes)
        f.add("memtop_slab_cache_objects", (cache.name,), cache.num_objs)
        f.add("memtop_slab_cache_active_objects", (cache.name,), cache.active_objs)

    if sample.sockstat is not None:
        f.add("memtop_sockstat_sockets_used", (), sample.sockstat.sockets_used)
        for proto in sample.sockstat.protocols:
            for state, count in proto.counts.items():
                if state not in ("mem", "memory"):
                    f.add("memtop_sockstat_sockets", (proto.name, state), count)
            f.add("memtop_sockstat_memory_bytes", (proto.name,), proto.mem_bytes)

    for m in sample.mounts:
        labels = (m.mountpoint, m.fstype, m.device)
        f.add("memtop_tmpfs_size_bytes", labels, m.size_bytes)
        f.add("memtop_tmpfs_used_bytes", labels, m.used_bytes)
        f.add("memtop_tmpfs_inodes_used", labels, m.inodes_used)

    for cg in sample.cgroups:
        path = cg.path or "/"
        f.add("memtop_cgroup_memory_usage_bytes", (path,), cg.current)
        f.add("memtop_cgroup_memory_limit_bytes", (path,), cg.max)
        for event, count in cg.events.items():
            if event != "under_oom":  # a state (0/1), not a count
                f.add("memtop_cgroup_memory_events_total", (path, event), count)

    boot_time = sample.wall_time - sample.uptime_s if sample.uptime_s is not None else None
    for s in sample.processes:
        labels = (str(s.pid), s.comm)
        r = s.rollup
        f.add("memtop_process_rss_bytes", labels, s.rss_bytes)
        f.add("memtop_process_rss_anon_bytes", labels, s.anon_bytes)
        f.add("memtop_process_rss_file_bytes", labels, s.file_bytes)
        f.add("memtop_process_rss_shmem_bytes", labels, s.shmem_bytes)
        f.add("memtop_process_pss_bytes", labels, r.pss if r else None)
        f.add("memtop_process_uss_bytes", labels, r.uss if r else None)
        f.add("memtop_process_swap_bytes", labels, s.swap_bytes)
        f.add("memtop_process_lazyfree_bytes", labels, r.lazyfree if r else None)
        f.add("memtop_process_open_fds", labels, s.fd_count)
        f.add("memtop_process_threads", labels, s.threads)
        f.add("memtop_process_page_faults_total", labels + ("minor",), s.minflt)
        f.add("memtop_process_page_faults_total", labels + ("major",), s.majflt)
        if boot_time is not None:
            f.add("memtop_process_start_time_seconds", labels, round(boot_time + s.identity.start_ticks / CLOCK_TICKS, 2))
        heap = sample.heaps.get(s.identity)
        if heap is not None:
            f.add("memtop_process_heap_bytes", labels + ("in_use",), heap.in_use_bytes)
            f.add("memtop_process_heap_bytes", labels + ("free",), heap.free_bytes)
            f.add("memtop_process_heap_bytes", labels + ("top",), heap.top_bytes)
            f.add("memtop_process_heap_arenas", labels, heap.arenas)
            f.add("memtop_process_heap_walk_timestamp_seconds", labels, heap.walked_at)

    f.add("memtop_exporter_samples_total", (), sample.tick + 1)
    f.add("memtop_exporter_sample_duration_seconds", (), sample.duration_s)
    f.add("memtop_exporter_sample_cpu_seconds_total", (), sample.cpu_total_s)
    f.add("memtop_exporter_last_sample_timestamp_seconds", (), sample.wall_time)
    for source in SOURCES:
        if source == "heap" and not sample.heaps and "heap" not in sample.errors:
            continue  # --heap is off (or nothing walked yet)
        f.add("memtop_exporter_source_ok", (source,), 0 if source in sample.errors else 1)
    return list(f.families.values())


@dataclass(frozen=True, slots=True)
class Exposition:
    """The text exposition (format 0.0.4) of one sample, plain and gzipped, rendered once."""

    text: bytes
    gzip: bytes


def _render(families: list) -> Exposition:
    class _Fixed:
        def collect(self):
            return families

    text = generate_latest(_Fixed())
    return Exposition(text, gzip.compress(text, compresslevel=1, mtime=0))


class MemtopCollector(Collector):
    """A prometheus-client collector that serves the families of the latest published sample.

    :meth:`publish` also renders the text exposition once per sample (~7 ms for ~600 series),
    so that the HTTP server hands every scrape the same bytes: a scrape costs an HTTP exchange,
    not a rendering, and never a read of /proc.
    """

    def __init__(self):
        self._families = metric_families(None)
        self.exposition = _render(self._families)
        self.latest: ExportSample | None = None

    def publish(self, sample: ExportSample) -> None:
        """Called by the sampling thread: build once, then swap references (each swap is atomic;
        a scrape reads ``exposition`` once)."""
        families = metric_families(sample)
        exposition = _render(families)
        self.latest = sample
        self._families = families
        self.exposition = exposition

    def collect(self):
        return list(self._families)

    def describe(self):
        # Registration must not call collect(); the names are fixed and known.
        return []
