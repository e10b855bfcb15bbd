"""A target's address space, read-only: /proc/PID/maps, pagemap and mem (man 5 proc_pid_maps,
Documentation/admin-guide/mm/pagemap.rst, man 5 proc_pid_mem).

Reading a never-touched or madvised page through /proc/PID/mem makes the kernel map the shared
zero page into the target (pagemap then reports it present), so :meth:`TargetMemory.read`
consults pagemap first and reads only pages that are present; the others read as zeros, which
is what they contain (swapped-out pages are the exception, reported by ``swapped_pages``).
"""

from __future__ import annotations

import errno
import mmap
import os
from dataclasses import dataclass
from pathlib import Path

from memtop.procfs import PAGE_SIZE, AccessDenied, NoSuchProcess, read_bytes

PM_PRESENT = 1 << 63
PM_SWAPPED = 1 << 62
PM_PFN_MASK = (1 << 55) - 1
READ_CHUNK = 1 << 20  # one pread per MiB at most: bigger reads gained nothing in the prototype


@dataclass(frozen=True, slots=True)
class Mapping:
    start: int
    end: int
    perms: str
    offset: int
    dev: str
    inode: int
    path: str

    @property
    def size(self) -> int:
        return self.end - self.start

    @property
    def anonymous(self) -> bool:
        return self.inode == 0 and (not self.path or self.path.startswith("["))


def parse_maps_file(text: str) -> list[Mapping]:
    """Parse /proc/PID/maps. The path may contain spaces (and end in " (deleted)")."""
    out = []
    for line in text.splitlines():
        parts = line.split(None, 5)
        if len(parts) < 5:
            continue
        lo, _, hi = parts[0].partition("-")
        out.append(Mapping(int(lo, 16), int(hi, 16), parts[1], int(parts[2], 16), parts[3], int(parts[4]),
                           parts[5] if len(parts) > 5 else ""))
    return out


def read_maps(pid: int, root: Path = Path("/proc")) -> list[Mapping]:
    return parse_maps_file(read_bytes(f"{root}/{pid}/maps").decode("utf-8", "surrogateescape"))


_ZERO_PFN: int | None = None
_ZERO_PFN_KNOWN = False


def zero_page_pfn() -> int | None:
    """The PFN of the shared zero page, found by mapping an anonymous page here, reading it (a
    read fault maps the zero page, mm/memory.c do_anonymous_page) and asking our own pagemap.
    None when PFNs are hidden (pagemap shows PFN 0 without CAP_SYS_ADMIN)."""
    global _ZERO_PFN, _ZERO_PFN_KNOWN
    if _ZERO_PFN_KNOWN:
        return _ZERO_PFN
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    addr = libc.mmap(None, PAGE_SIZE, mmap.PROT_READ, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1, 0)
    pfn = None
    if addr not in (None, ctypes.c_void_p(-1).value):
        try:
            ctypes.string_at(addr, 1)
            with open("/proc/self/pagemap", "rb", buffering=0) as f:
                entry = int.from_bytes(os.pread(f.fileno(), 8, (addr // PAGE_SIZE) * 8), "little")
            if entry & PM_PRESENT and entry & PM_PFN_MASK:
                pfn = entry & PM_PFN_MASK
        except OSError:
            pfn = None
        finally:
            libc.munmap(addr, PAGE_SIZE)
    _ZERO_PFN, _ZERO_PFN_KNOWN = pfn, True
    return pfn


# Tables over the top byte of a pagemap entry (bits 56-63): 63 present, 62 swapped, 61 file or
# shared-anon page, 56 exclusively mapped. The shared zero page has no struct page for pagemap
# (vm_normal_page returns NULL), so it is present with neither bit 61 nor bit 56: only such
# entries need their PFN compared with the zero page's (seen here: 0x8000.. vs 0x8100.. for an
# ordinary anonymous page).
_PRESENT_TABLE = bytes(1 if b & 0x80 else 0 for b in range(256))
_SWAPPED_TABLE = bytes(1 if b & 0xC0 == 0x40 else 0 for b in range(256))
_PRESENT_SURE_TABLE = bytes(1 if b & 0x80 and b & 0x21 else 0 for b in range(256))
_PRESENT_CHECK_TABLE = bytes(1 if b & 0x80 and not b & 0x21 else 0 for b in range(256))


class Pagemap:
    """Raw /proc/PID/pagemap entries for a range of pages, with C-speed counting: the flags sit
    in the top byte of each little-endian entry, so ``raw[7::8]`` is one byte of flags per page."""

    __slots__ = ("first_page", "raw", "zero_pfn", "_tops")

    def __init__(self, first_page: int, raw: bytes, zero_pfn: int | None):
        self.first_page = first_page
        self.raw = raw
        self.zero_pfn = zero_pfn
        self._tops = raw[7::8]

    def __len__(self) -> int:
        return len(self._tops)

    def entry(self, page: int) -> int:
        i = (page - self.first_page) * 8
        return int.from_bytes(self.raw[i:i + 8], "little")

    def present_mask(self) -> bytes:
        return self._tops.translate(_PRESENT_TABLE)

    def swapped_pages(self) -> int:
        return self._tops.translate(_SWAPPED_TABLE).count(1)

    def resident_pages(self, first: int, last: int) -> int:
        """Present pages in [first, last) (page numbers), not counting the shared zero page.
        Only present entries that are neither exclusive nor file pages can be the zero page:
        those have their PFN compared (a shared anonymous page after fork is one too)."""
        lo = max(0, first - self.first_page)
        hi = min(len(self._tops), last - self.first_page)
        if hi <= lo:
            return 0
        tops = self._tops[lo:hi]
        count = tops.translate(_PRESENT_SURE_TABLE).count(1)
        file_mask = tops.translate(_PRESENT_CHECK_TABLE)
        pos = file_mask.find(1)
        while pos != -1:
            entry = self.entry(self.first_page + lo + pos)
            if self.zero_pfn is None or entry & PM_PFN_MASK != self.zero_pfn:
                count += 1
            pos = file_mask.find(1, pos + 1)
        return count


class MemoryReadError(Exception):
    """An address of the target could not be read (unmapped, or the heap moved under us)."""

    def __init__(self, address: int, detail: str):
        self.address = address
        super().__init__(f"cannot read 0x{address:x}: {detail}")


class TargetMemory:
    """Read-only access to a live process's memory through /proc/PID/mem and pagemap.

    Opening /proc/PID/mem needs PTRACE_MODE_ATTACH_FSCREDS (man 5 proc_pid_mem): root or
    CAP_SYS_PTRACE for another user's process, and Yama's ptrace_scope may forbid even that.
    """

    def __init__(self, pid: int, root: Path = Path("/proc")):
        self.pid = pid
        self.root = Path(root)
        self.zero_pfn = zero_page_pfn()
        self._mem = self._open(f"{root}/{pid}/mem")
        try:
            self._pagemap = self._open(f"{root}/{pid}/pagemap")
        except Exception:
            os.close(self._mem)
            raise
        self.bytes_read = 0

    @staticmethod
    def _open(path: str) -> int:
        try:
            return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except (FileNotFoundError, ProcessLookupError) as e:
            raise NoSuchProcess(path) from e
        except PermissionError as e:
            if os.geteuid() == 0:
                raise AccessDenied(path, f"the kernel refused {path} even to root (Yama ptrace_scope or an LSM)") from e
            raise AccessDenied(path, f"reading another process's heap needs root or CAP_SYS_PTRACE ({path})") from e

    def close(self) -> None:
        for fd in (self._mem, self._pagemap):
            try:
                os.close(fd)
            except OSError:
                pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _pread(self, fd: int, size: int, offset: int) -> bytes:
        try:
            data = os.pread(fd, size, offset)
        except ProcessLookupError as e:
            raise NoSuchProcess(f"{self.root}/{self.pid}/mem") from e
        except OSError as e:
            if e.errno in (errno.ESRCH,):
                raise NoSuchProcess(f"{self.root}/{self.pid}/mem") from e
            if e.errno in (errno.EIO, errno.EFAULT, errno.EINVAL):
                if not self.alive():
                    raise NoSuchProcess(f"{self.root}/{self.pid}/mem") from e
                raise MemoryReadError(offset, os.strerror(e.errno)) from e
            if e.errno in (errno.EACCES, errno.EPERM):
                raise AccessDenied(f"{self.root}/{self.pid}/mem") from e
            raise
        if len(data) != size:
            if not data and not self.alive():
                raise NoSuchProcess(f"{self.root}/{self.pid}/mem")
            raise MemoryReadError(offset, f"short read ({len(data)} of {size} bytes)")
        return data

    def _preadinto(self, fd: int, buffer: memoryview, offset: int) -> None:
        """Read straight into ``buffer`` (no intermediate bytes object)."""
        try:
            got = os.preadv(fd, [buffer], offset)
        except OSError:
            buffer[:] = self._pread(fd, len(buffer), offset)  # the same errors, translated
            return
        if got != len(buffer):
            buffer[:] = self._pread(fd, len(buffer), offset)

    def alive(self) -> bool:
        """False once the process is gone or a zombie (its memory is released: reads return 0)."""
        try:
            with open(f"{self.root}/{self.pid}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            return False
        return stat[stat.rindex(b")") + 2:][:1] not in (b"Z", b"X")

    def pagemap(self, start: int, end: int) -> "Pagemap":
        """The pagemap entries (one 64-bit word per page) of [start, end), page-aligned outward."""
        first = start // PAGE_SIZE
        last = (end + PAGE_SIZE - 1) // PAGE_SIZE
        raw = self._pread(self._pagemap, (last - first) * 8, first * 8) if last > first else b""
        return Pagemap(first, raw, self.zero_pfn)

    def resident_bytes(self, start: int, end: int, pagemap: "Pagemap | None" = None) -> int:
        """Bytes of whole pages in [start, end) that are present and are not the zero page.
        ``start`` and ``end`` must be page-aligned; ``pagemap`` may be one already read."""
        if end <= start:
            return 0
        if pagemap is None:
            pagemap = self.pagemap(start, end)
        return pagemap.resident_pages(start // PAGE_SIZE, end // PAGE_SIZE) * PAGE_SIZE

    def read(self, address: int, size: int) -> tuple[bytearray, int]:
        """Read [address, address+size) reading only present pages; returns (data, swapped pages).

        Pages not present read as zeros without touching the target. Swapped-out pages are not
        read either (that would swap them in): they read as zeros and are counted.
        """
        out = bytearray(size)
        if size <= 0:
            return out, 0
        return out, self.read_into(address, size, out, zeroed=True)

    def read_into(self, address: int, size: int, buffer: bytearray, *, zeroed: bool = False) -> int:
        """:meth:`read` into the first ``size`` bytes of ``buffer`` (reused by the caller: a heap
        walk reads window after window into one buffer, whose pages stay faulted in); returns the
        swapped pages. The parts not read are zeroed unless ``zeroed`` says they already are."""
        if size <= 0:
            return 0
        end = address + size
        view = memoryview(buffer)
        pagemap = self.pagemap(address, end)
        mask = pagemap.present_mask()
        swapped = pagemap.swapped_pages()
        first = pagemap.first_page
        mem = self._mem
        done = address  # everything below is filled
        pos = mask.find(1)
        while pos != -1:
            stop = mask.find(0, pos)
            if stop == -1:
                stop = len(mask)
            lo = max(address, (first + pos) * PAGE_SIZE)
            hi = min(end, (first + stop) * PAGE_SIZE)
            if lo > done and not zeroed:
                view[done - address:lo - address] = bytes(lo - done)
            at = lo
            while at < hi:
                n = min(READ_CHUNK, hi - at)
                self._preadinto(mem, view[at - address:at - address + n], at)
                at += n
            self.bytes_read += hi - lo
            done = hi
            pos = mask.find(1, stop)
        if done < end and not zeroed:
            view[done - address:size] = bytes(end - done)
        view.release()
        return swapped

    def read_direct(self, address: int, size: int) -> bytes:
        """One pread, no pagemap check: for bytes the caller knows to be in a present page."""
        return self._pread(self._mem, size, address)

    def read_exact(self, address: int, size: int) -> bytes:
        """Read a small structure (an arena, mp_) that is expected to be resident."""
        # A direct read: these live in libc's .data/.bss or an arena header, pages glibc has
        # written, so they are present; a file-backed page that is not would be faulted in from
        # the file (not the zero page), which is harmless.
        return self._pread(self._mem, size, address)

    def word(self, address: int) -> int:
        return int.from_bytes(self.read_exact(address, 8), "little")
