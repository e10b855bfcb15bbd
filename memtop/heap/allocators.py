"""The allocators that are not glibc: which reader reads which, and what they share.

Every reader here is read-only (/proc/PID/maps, mem, pagemap, task/*/comm, environ): nothing
stops the target. The libraries Debian ships are stripped and the allocators' state is in hidden
symbols, so each reader finds its structures by their shape in the library's .bss, checks what
it found against invariants the allocator keeps, and refuses (status 'unsupported', with the
reason) rather than guess. Where a figure needs the allocator's cooperation, :mod:`memtop.heap.
allocator_calls` asks the allocator itself through gdb, on request.

Entry point: :func:`read_allocator`.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, replace
from pathlib import Path

from memtop.heap.elf import ElfError, ElfFile
from memtop.heap.memory import Mapping, MemoryReadError, TargetMemory
from memtop.model.allocator import COMMON_FIGURES, AllocatorReport
from memtop.model.process import ProcessIdentity
from memtop.procfs import AccessDenied, NoSuchProcess, ProcfsError

MAX_LIBRARY_BYTES = 256 << 20


class ReaderError(Exception):
    """The allocator could not be read; ``status`` is the report status to use."""

    def __init__(self, status: str, reason: str):
        self.status = status
        self.reason = reason
        super().__init__(reason)


class Inconsistent(Exception):
    """What a walk read did not hold together: the heap changed under it (or is not the layout
    the reader knows)."""


ATTEMPTS = 3  # walks of a heap that keeps changing before saying so


def read_consistently(mem: TargetMemory, pid: int, read, *, attempts: int = ATTEMPTS, again=None):
    """``read()`` until one run finishes without :class:`Inconsistent` or a failed memory read:
    ``(value, None)``; after ``attempts`` runs, ``(None, the last problem)``. The process exiting
    meanwhile raises ReaderError("gone"). ``again()`` runs before each new try (reread the maps)."""
    problem = None
    for attempt in range(attempts):
        if attempt and again is not None:
            again()
        try:
            return read(), None
        except (Inconsistent, MemoryReadError) as e:
            problem = str(e)
            if not mem.alive():
                raise ReaderError("gone", f"process {pid} exited during the walk") from None
    return None, problem


@dataclass(frozen=True, slots=True)
class LibraryImage:
    """An allocator's ELF object as loaded in the target (a shared library, or the executable
    for an allocator linked statically)."""

    path: str  # as the target's maps name it
    file_path: str  # how memtop reads it (map_files or /proc/PID/root/...)
    base: int  # load bias
    data: bytes
    elf: ElfFile

    def section_range(self, name: str) -> tuple[int, int] | None:
        """(start, end) of a section in the target, or None."""
        section = self.elf.section(name)
        if section is None or not section.size:
            return None
        return self.base + section.addr, self.base + section.addr + section.size

    def symbol(self, name: str) -> int | None:
        value = self.elf.symbols({name}).get(name)
        return None if value is None else self.base + value


def open_library(pid: int, maps: list[Mapping], root: Path, path: str) -> LibraryImage:
    """The ELF file mapped at ``path`` in the target, read through /proc/PID/map_files (works
    across mount namespaces) or /proc/PID/root. Raises ReaderError."""
    from memtop.heap.glibc import _elf_cached, _read_file_cached

    mapped = [m for m in maps if m.path.removesuffix(" (deleted)") == path]
    first = min((m for m in mapped if m.offset == 0), key=lambda m: m.start, default=None)
    if first is None:
        raise ReaderError("unsupported", f"{path} is mapped without its first page; cannot find its load address")
    candidates = [f"{root}/{pid}/map_files/{first.start:x}-{first.end:x}", f"{root}/{pid}/root{path}"]
    for candidate in candidates:
        try:
            if os.stat(candidate).st_size > MAX_LIBRARY_BYTES:
                raise ReaderError("unsupported", f"{path} is larger than {MAX_LIBRARY_BYTES >> 20} MiB: not read")
            data = _read_file_cached(candidate)
        except OSError:
            continue
        try:
            elf = _elf_cached(data)
        except Exception as e:  # GlibcError from the shared cache: not an ELF file we read
            raise ReaderError("unsupported", f"{path} is not a 64-bit ELF file memtop reads ({e})") from None
        if elf.machine != 62:
            raise ReaderError("unsupported", f"{path} is not x86_64 code: only x86_64 is read")
        return LibraryImage(path, candidate, first.start - elf.first_load_vaddr(), data, elf)
    raise ReaderError("denied", f"cannot read {path} of the target; root or CAP_SYS_PTRACE is needed")


def thread_names(pid: int, root: Path) -> list[str]:
    """The comm of every thread (/proc/PID/task/TID/comm); an allocator's own threads are named."""
    names = []
    try:
        tids = os.listdir(f"{root}/{pid}/task")
    except OSError:
        return names
    for tid in tids:
        try:
            with open(f"{root}/{pid}/task/{tid}/comm", "rb") as f:
                names.append(f.read().rstrip(b"\n").decode("utf-8", "replace"))
        except OSError:
            continue
    return names


def environment(pid: int, root: Path) -> tuple[dict[str, str] | None, str | None]:
    """The process's initial environment, or (None, why)."""
    from memtop.procfs.environ import read_environ

    try:
        return read_environ(pid, root), None
    except AccessDenied as e:
        return None, e.reason
    except (NoSuchProcess, ProcfsError) as e:
        return None, str(e)


def read_allocator(pid: int, root: Path, maps: list[Mapping], guess, identity: ProcessIdentity | None,
                   ) -> AllocatorReport | None:
    """The report of a non-glibc allocator named by ``guess`` (memtop.heap.detect.AllocatorGuess),
    or None for kinds memtop has no reader for ('unknown', a static binary of unknown libc).
    Never raises for a vanished or forbidden process: the report's status says why."""
    started = time.monotonic()
    kind = guess.kind
    if kind == "static":
        # A stripped static executable without glibc's ABI note: musl's malloc context has a
        # shape that names it (see memtop.heap.musl); anything else stays unknown.
        from memtop.heap import musl

        try:
            report = musl.read(pid, root, maps, guess)
        except (ReaderError, ProcfsError, OSError, ElfError):
            return None
        return replace(report, read_seconds=time.monotonic() - started,
                       notes=report.notes + ("musl told by the shape of its malloc context in the stripped executable's .bss",))
    if kind not in ("jemalloc", "tcmalloc", "mimalloc", "musl"):
        return None
    library = guess.library
    try:
        if kind == "jemalloc":
            from memtop.heap import jemalloc as reader
        elif kind == "tcmalloc":
            from memtop.heap import tcmalloc as reader
        elif kind == "mimalloc":
            from memtop.heap import mimalloc as reader
        else:
            from memtop.heap import musl as reader
        report = reader.read(pid, root, maps, guess)
    except ReaderError as e:
        report = AllocatorReport(kind=kind, version=None, library=library, static=guess.static, status=e.status,
                                 reason=e.reason, method="not read")
    except NoSuchProcess:
        report = AllocatorReport(kind=kind, version=None, library=library, static=guess.static, status="gone",
                                 reason=f"process {pid} exited while its allocator was read", method="not read")
    except AccessDenied as e:
        report = AllocatorReport(kind=kind, version=None, library=library, static=guess.static, status="denied",
                                 reason=e.reason, method="not read")
    except (ProcfsError, OSError, ElfError) as e:
        report = AllocatorReport(kind=kind, version=None, library=library, static=guess.static, status="unsupported",
                                 reason=f"the allocator could not be read: {e}", method="not read")
    return replace(report, read_seconds=time.monotonic() - started)


def allocator_json(report: AllocatorReport) -> dict:
    """The fields of explain's ``allocator`` object for a non-glibc allocator. glibc's fields keep
    their meaning where they have one here (``system_bytes``: address space held; ``in_use_bytes``:
    allocated; ``trim_release_bytes``: what the allocator's own release returns); the others are
    null. The allocator's own figures follow, each with its source."""
    valid = report.valid
    from memtop.text import json_safe

    return json_safe({
        "version": report.version,
        "library": report.library,
        "valid": valid,
        "status": report.status,
        "reason": report.reason,
        "method": report.method,
        "system_bytes": report.mapped_bytes if valid else None,
        "in_use_bytes": report.allocated_bytes if valid else None,
        "trim_release_bytes": report.release_bytes if valid else None,
        "release_call": report.release_call,
        **{figure: getattr(report, figure) if valid else None for figure in COMMON_FIGURES},
        "sources": dict(report.sources),
        "unknown": dict(report.unknown),
        "details": dict(report.details),
        "settings": [{"name": s.name, "value": s.value, "source": s.source} for s in report.settings],
        "allocator_arenas": [{"index": a.index, "allocated_bytes": a.allocated_bytes, "active_bytes": a.active_bytes,
                              "dirty_bytes": a.dirty_bytes, "muzzy_bytes": a.muzzy_bytes,
                              "retained_bytes": a.retained_bytes, "dirty_resident_bytes": a.dirty_resident_bytes,
                              "muzzy_resident_bytes": a.muzzy_resident_bytes, "extents": a.extents}
                             for a in report.arenas],
        "notes": list(report.notes),
        "read_seconds": round(report.read_seconds, 3),
    })
