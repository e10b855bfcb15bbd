"""/proc/PID/smaps, one record per mapping (man 5 proc_pid_smaps).

Full smaps costs kernel time that grows with the number of mappings (170 ms and 14.5 MB of text
for 20k mappings, reference/facts.md): read it on demand for one process, in a worker.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from memtop.procfs import PROC, ParseError, read_bytes

# The per-mapping lines kept (kB in the file, bytes here).
_KEYS = {"Rss": "rss", "Private_Dirty": "private_dirty", "Swap": "swap", "Anonymous": "anonymous"}
_HEX = frozenset("0123456789abcdef")


@dataclass(frozen=True, slots=True)
class SmapsMapping:
    start: int
    end: int
    perms: str  # "rw-p"
    offset: int
    inode: int
    path: str  # "" for anonymous, "[heap]", "[stack]", a file, "/memfd:x (deleted)"...
    rss: int | None = None
    private_dirty: int | None = None
    swap: int | None = None
    anonymous: int | None = None

    @property
    def size(self) -> int:
        return self.end - self.start

    @property
    def is_anonymous(self) -> bool:
        """Private or shared memory with no file behind it and no kernel name ([heap] is named)."""
        return self.inode == 0 and self.path == ""


def _header(line: str, path: str) -> dict:
    parts = line.split(None, 5)
    try:
        start_s, end_s = parts[0].split("-")
        return {
            "start": int(start_s, 16),
            "end": int(end_s, 16),
            "perms": parts[1],
            "offset": int(parts[2], 16),
            "inode": int(parts[4]),
            "path": parts[5].strip() if len(parts) > 5 else "",
        }
    except (ValueError, IndexError) as e:
        raise ParseError(path, f"bad mapping line {line[:80]!r}") from e


def parse_smaps_mappings(text: str, path: str = "smaps") -> list[SmapsMapping]:
    """Parse /proc/PID/smaps (or /proc/PID/maps: then rss and the rest are None)."""
    mappings: list[SmapsMapping] = []
    current: dict | None = None
    for line in text.splitlines():
        if not line:
            continue
        if line[0] in _HEX:  # a mapping header: addresses are lower-case hex, keys start upper-case
            if current is not None:
                mappings.append(SmapsMapping(**current))
            current = _header(line, path)
            continue
        key, sep, rest = line.partition(":")
        field = _KEYS.get(key)
        if field is None or not sep:
            continue
        if current is None:
            raise ParseError(path, f"{key} line before any mapping")
        parts = rest.split()
        try:
            value = int(parts[0])
        except (ValueError, IndexError) as e:
            raise ParseError(path, f"bad line {line[:80]!r}") from e
        current[field] = value * 1024 if len(parts) > 1 and parts[1] == "kB" else value
    if current is not None:
        mappings.append(SmapsMapping(**current))
    return mappings


def read_smaps_mappings(pid: int, root: Path = PROC) -> list[SmapsMapping]:
    """Raises AccessDenied / NoSuchProcess / ParseError (see memtop.procfs)."""
    path = f"{root}/{pid}/smaps"
    return parse_smaps_mappings(read_bytes(path).decode("utf-8", "surrogateescape"), path)
