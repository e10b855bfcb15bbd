"""/proc/vmstat: cumulative VM event counters, and rates from two reads."""

from __future__ import annotations

from pathlib import Path
from types import MappingProxyType

from memtop.model.pagecache import VMSTAT_RATE_KEYS, VmstatRates
from memtop.procfs import PROC, ParseError, read_text


def parse_vmstat_file(text: str, path: str = "vmstat") -> dict[str, int]:
    """``name value`` lines into a dict (Documentation/admin-guide/mm, mm/vmstat.c vmstat_text)."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) != 2:
            continue
        try:
            out[parts[0]] = int(parts[1])
        except ValueError:
            continue
    if "pgpgin" not in out and "nr_free_pages" not in out:
        raise ParseError(path, "no pgpgin or nr_free_pages line")
    return out


def read_vmstat(root: Path = PROC) -> dict[str, int]:
    path = f"{root}/vmstat"
    return parse_vmstat_file(read_text(path), path)


def vmstat_rates(
    before: dict[str, int], after: dict[str, int], interval_s: float, time: float, keys=VMSTAT_RATE_KEYS
) -> VmstatRates:
    """Per-second rates of ``keys`` between two reads. A counter that went backwards (it cannot,
    short of a reboot between reads) or is missing from either read is left out."""
    rates: dict[str, float] = {}
    if interval_s > 0:
        for key in keys:
            a = before.get(key)
            b = after.get(key)
            if a is None or b is None or b < a:
                continue
            rates[key] = (b - a) / interval_s
    return VmstatRates(interval_s=interval_s, rates=MappingProxyType(rates), time=time)
