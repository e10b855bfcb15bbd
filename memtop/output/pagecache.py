"""``memtop snapshot --json`` sections of the page cache: ``pagecache`` and ``vmstat``."""

from __future__ import annotations

from memtop.collect.pagecache import one_shot_rates, thrashing_finding, top_cached_files
from memtop.model.pagecache import VMSTAT_RATE_KEYS
from memtop.procfs import ProcfsError
from memtop.procfs.cachestat import cachestat_supported

TOP_FILES = 100
VMSTAT_INTERVAL_S = 0.5

# The unit of each vmstat counter's rate (pgpgin/pgpgout are KiB, as vmstat(8) bi/bo).
VMSTAT_UNITS = {
    "pgpgin": "KiB/s",
    "pgpgout": "KiB/s",
    "pgmajfault": "faults/s",
    "workingset_refault_file": "pages/s",
    "workingset_refault_anon": "pages/s",
    "workingset_activate_file": "pages/s",
    "workingset_activate_anon": "pages/s",
}


def cached_file_json(cached) -> dict:
    doc = cached.stat.as_json()
    doc["pids"] = list(cached.pids)
    return doc


def pagecache_section(context) -> dict:
    """Source (b): the files any process maps or holds open, the most cached first."""
    files, held = top_cached_files(context.root)
    return {
        "source": "files mapped or open by any process (/proc/PID/maps, /proc/PID/fd), measured with "
        + ("cachestat(2)" if cachestat_supported() else "mmap(2)+mincore(2)"),
        "files_total": len(files),
        "limit": TOP_FILES,
        "processes_seen": held.processes_seen,
        "processes_denied": held.processes_denied,
        "files": [cached_file_json(f) for f in files[:TOP_FILES]],
    }


def vmstat_section(context) -> dict:
    """Rates of the thrashing counters: two reads of /proc/vmstat ``interval_s`` apart."""
    try:
        rates = one_shot_rates(context.root, VMSTAT_INTERVAL_S)
    except ProcfsError as e:
        return {"interval_s": None, "rates": {}, "units": VMSTAT_UNITS, "error": str(e), "finding": None}
    finding = thrashing_finding([rates])
    return {
        "interval_s": rates.interval_s,
        "method": f"two reads of /proc/vmstat {rates.interval_s:.2f} s apart (a snapshot has no history)",
        "rates": {key: rates.get(key) for key in VMSTAT_RATE_KEYS},
        "units": VMSTAT_UNITS,
        "finding": finding.as_json() if finding else None,
    }
