"""``memtop snapshot --json`` sections of the page cache: ``pagecache`` and ``vmstat``."""

from __future__ import annotations

from memtop.collect.pagecache import thrashing_finding
from memtop.model.pagecache import VMSTAT_RATE_KEYS

TOP_FILES = 100

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


def pagecache_section(sample) -> dict:
    """Source (b): the files any process maps or holds open, the most cached first."""
    result = sample.result("system_files")
    view = result.value if result is not None else None
    if view is None:
        return {"source": None, "error": result.error if result is not None else "not read", "files": []}
    return {
        "source": "files mapped or open by any process (/proc/PID/maps, /proc/PID/fd), measured with " + view.method,
        "files_total": len(view.files),
        "limit": TOP_FILES,
        "processes_seen": view.processes_seen,
        "processes_denied": view.processes_denied,
        "files": [cached_file_json(f) for f in view.files[:TOP_FILES]],
    }


def vmstat_section(sample) -> dict:
    """Rates of the thrashing counters (the Collector's vmstat part: two reads of /proc/vmstat
    half a second apart for a one-shot snapshot)."""
    result = sample.result("vmstat")
    view = result.value if result is not None else None
    rates = view.latest if view is not None else None
    if rates is None:
        return {"interval_s": None, "rates": {}, "units": VMSTAT_UNITS, "finding": None,
                "error": result.error if result is not None and result.error else "no two reads of /proc/vmstat"}
    finding = thrashing_finding([rates])
    return {
        "interval_s": rates.interval_s,
        "method": f"two reads of /proc/vmstat {rates.interval_s:.2f} s apart (a snapshot has no history)",
        "rates": {key: rates.get(key) for key in VMSTAT_RATE_KEYS},
        "units": VMSTAT_UNITS,
        "finding": finding.as_json() if finding else None,
    }
