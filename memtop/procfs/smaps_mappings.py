"""/proc/PID/smaps, one record per mapping (man 5 proc_pid_smaps).

Full smaps costs kernel time that grows with the number of mappings (170 ms and 14.5 MB of text
for 20k mappings, reference/facts.md): read it on demand for one process, in a worker.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from memtop.procfs import PROC, ParseError, read_bytes

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


# The kept lines by first character: a dispatch on line[0] skips the ~20 other lines of each
# mapping with one dict lookup (20k mappings are ~500k lines; this parses 30 MB in about a second).
_BY_FIRST = {"R": ("Rss:", "rss"), "P": ("Private_Dirty:", "private_dirty"), "S": ("Swap:", "swap"),
             "A": ("Anonymous:", "anonymous")}


_FIND_KEYS = (("\nRss:", "rss"), ("\nPrivate_Dirty:", "private_dirty"), ("\nSwap:", "swap"),
              ("\nAnonymous:", "anonymous"))


def parse_smaps_mappings(text: str, path: str = "smaps") -> list[SmapsMapping]:
    """Parse /proc/PID/smaps (or /proc/PID/maps: then rss and the rest are None).

    Every mapping of smaps ends with a ``VmFlags:`` line (fs/proc/task_mmu.c show_smap calls
    show_smap_vma_flags for each one since Linux 3.8): the text is cut there
    and the few kept keys are found with str.find, so the ~20 other lines of each mapping are
    skipped at C speed. Without VmFlags (maps, old kernels) it goes line by line.
    """
    if "\nVmFlags:" not in text:
        return _parse_lines(text, path)
    mappings: list[SmapsMapping] = []
    blocks = text.split("\nVmFlags:")
    for index, block in enumerate(blocks):
        # block 0 starts with its header; the others with the previous mapping's flags line
        start = 0 if index == 0 else block.find("\n") + 1
        if index and start == 0:
            continue  # the flags of the last mapping, nothing after them
        end = block.find("\n", start)
        header = block[start:] if end < 0 else block[start:end]
        if not header:
            continue
        if header[0] not in _HEX:
            raise ParseError(path, f"bad mapping line {header[:80]!r}")
        current = _header(header, path)
        if end >= 0:
            for key, field in _FIND_KEYS:
                at = block.find(key, end)
                if at < 0:
                    continue
                stop = block.find("\n", at + 1)
                parts = (block[at + len(key):] if stop < 0 else block[at + len(key):stop]).split()
                try:
                    value = int(parts[0])
                except (ValueError, IndexError) as e:
                    raise ParseError(path, f"bad line {block[at + 1:at + 80]!r}") from e
                current[field] = value * 1024 if len(parts) > 1 and parts[1] == "kB" else value
        mappings.append(SmapsMapping(**current))
    return mappings


def _parse_lines(text: str, path: str) -> list[SmapsMapping]:
    mappings: list[SmapsMapping] = []
    current: dict | None = None
    by_first = _BY_FIRST
    hexdigits = _HEX
    for line in text.split("\n"):
        if not line:
            continue
        first = line[0]
        if first in hexdigits:  # a mapping header: addresses are lower-case hex, keys start upper-case
            if current is not None:
                mappings.append(SmapsMapping(**current))
            current = _header(line, path)
            continue
        kept = by_first.get(first)
        if kept is None or not line.startswith(kept[0]):
            continue
        if current is None:
            raise ParseError(path, f"{kept[0]} line before any mapping")
        parts = line[len(kept[0]):].split()
        try:
            value = int(parts[0])
        except (ValueError, IndexError) as e:
            raise ParseError(path, f"bad line {line[:80]!r}") from e
        current[kept[1]] = value * 1024 if len(parts) > 1 and parts[1] == "kB" else value
    if current is not None:
        mappings.append(SmapsMapping(**current))
    return mappings


def read_smaps_mappings(pid: int, root: Path = PROC) -> list[SmapsMapping]:
    """Raises AccessDenied / NoSuchProcess / ParseError (see memtop.procfs)."""
    path = f"{root}/{pid}/smaps"
    return parse_smaps_mappings(read_bytes(path).decode("utf-8", "surrogateescape"), path)
