"""System-wide files: meminfo, uptime, the kernel's name for the host."""

from __future__ import annotations

from memtop.model.snapshot import buff_cache, memory_used  # noqa: F401 - derivations of meminfo, kept importable here

from pathlib import Path

from memtop.procfs import PROC, ParseError, parse_kb_table, read_bytes, read_text


def parse_meminfo_file(text: str, path: str = "meminfo") -> dict[str, int]:
    """/proc/meminfo as bytes (kB lines x 1024; HugePages_* counts stay counts)."""
    table = parse_kb_table(text, path)
    if "MemTotal" not in table:
        raise ParseError(path, "no MemTotal line")
    return table


def read_meminfo(root: Path = PROC) -> dict[str, int]:
    path = f"{root}/meminfo"
    return parse_meminfo_file(read_text(path), path)


def parse_uptime_file(text: str, path: str = "uptime") -> float:
    try:
        return float(text.split()[0])
    except (IndexError, ValueError) as e:
        raise ParseError(path, f"unexpected {text[:60]!r}") from e


def read_uptime(root: Path = PROC) -> float:
    path = f"{root}/uptime"
    return parse_uptime_file(read_text(path), path)


def read_hostname(root: Path = PROC) -> str:
    return read_bytes(f"{root}/sys/kernel/hostname").decode("utf-8", "surrogateescape").strip()


def read_kernel_release(root: Path = PROC) -> str:
    return read_bytes(f"{root}/sys/kernel/osrelease").decode("utf-8", "surrogateescape").strip()
