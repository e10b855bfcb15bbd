"""Reading files in trees memtop does not trust: a container's root, a runtime's state directory.

Everything is opened one component at a time below a starting directory with O_NOFOLLOW, so a
symbolic link anywhere on the way is refused, never followed (a container's root is hostile: an
absolute link inside /proc/PID/root would otherwise be resolved in the host's root, and ``..``
would climb out of it; here no component may be ``..`` or a link). The last file is opened
O_NONBLOCK (a FIFO cannot block the reader), must be a regular file, and at most ``limit`` bytes
are read. With ``trusted_owner`` every directory below the start and the file must belong to
root and not be writable by group or others (the rule for what root loads on the host: nobody
else may swap the file or a directory holding it).
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | getattr(os, "O_NOCTTY", 0)


class Refused(Exception):
    """The file was not read: the reason says why (a link, a bad owner, too big, absent...)."""

    def __init__(self, reason: str, missing: bool = False):
        super().__init__(reason)
        self.reason = reason
        self.missing = missing


@dataclass(frozen=True, slots=True)
class FileRead:
    data: bytes
    size: int
    mtime_ns: int
    inode: tuple[int, int]  # (st_dev, st_ino)
    uid: int


def is_plain_name(name: str) -> bool:
    return bool(name) and name not in (".", "..") and "/" not in name and "\0" not in name and len(name) <= 255


def _split(path: str) -> list[str]:
    parts = [p for p in path.split("/") if p]
    if not all(is_plain_name(p) for p in parts):
        raise Refused(f"{path}: not a plain path (.. or an empty or overlong component)")
    return parts


def _check_trusted(st: os.stat_result, what: str) -> None:
    if st.st_uid != 0:
        raise Refused(f"{what} belongs to uid {st.st_uid}, not root")
    if st.st_mode & 0o022:
        raise Refused(f"{what} is writable by {'others' if st.st_mode & 0o002 else 'its group'}")


def _errno_reason(e: OSError, what: str) -> Refused:
    if e.errno in (errno.ELOOP, errno.ENOTDIR):
        return Refused(f"{what}: a symbolic link (or a non-directory) on the way, not followed")
    if e.errno == errno.ENOENT:
        return Refused(f"{what}: does not exist", missing=True)
    return Refused(f"{what}: {os.strerror(e.errno) if e.errno else e}")


def _read_regular(fd: int, st: os.stat_result, limit: int, what: str) -> FileRead:
    """Read an open regular file whole, in 1 MiB preads, refusing more than ``limit`` bytes."""
    if st.st_size > limit:
        raise Refused(f"{what}: {st.st_size} bytes, more than the {limit} memtop reads")
    chunks = []
    offset = 0
    while offset <= limit:
        chunk = os.pread(fd, min(1 << 20, limit + 1 - offset), offset)
        if not chunk:
            break
        chunks.append(chunk)
        offset += len(chunk)
    data = b"".join(chunks)
    if len(data) > limit:
        raise Refused(f"{what}: grew past {limit} bytes while read")
    return FileRead(data, st.st_size, st.st_mtime_ns, (st.st_dev, st.st_ino), st.st_uid)


def open_dir_beneath(start: str, path: str, *, trusted_owner: bool = False) -> int:
    """An fd (O_RDONLY|O_DIRECTORY) of ``start``/``path``, walked without following links.

    ``start`` itself is opened normally (it may be /proc/PID/root, a magic link to a
    container's root, or the host's "/"). Raises :class:`Refused`.
    """
    parts = _split(path)
    try:
        fd = os.open(start, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as e:
        raise _errno_reason(e, start) from None
    walked = start.rstrip("/")
    try:
        for name in parts:
            walked = f"{walked}/{name}"
            new = os.open(name, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = new
            if trusted_owner:
                _check_trusted(os.fstat(fd), walked)
    except OSError as e:
        os.close(fd)
        raise _errno_reason(e, walked) from None
    except Refused:
        os.close(fd)
        raise
    return fd


def read_beneath(start: str, path: str, *, limit: int, trusted_owner: bool = False) -> FileRead:
    """Read ``start``/``path`` as the module doc says; raises :class:`Refused` with the reason.

    A file larger than ``limit`` is refused, not cut (a cut JSON or ELF file is no use).
    """
    parts = _split(path)
    if not parts:
        raise Refused(f"{path}: no file name")
    directory = "/".join(parts[:-1])
    dfd = open_dir_beneath(start, directory, trusted_owner=trusted_owner)
    what = f"{start.rstrip('/')}/{'/'.join(parts)}"
    try:
        try:
            fd = os.open(parts[-1], _FILE_FLAGS, dir_fd=dfd)
        except OSError as e:
            raise _errno_reason(e, what) from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise Refused(f"{what}: not a regular file")
            if trusted_owner:
                _check_trusted(st, what)
            return _read_regular(fd, st, limit, what)
        except OSError as e:
            raise _errno_reason(e, what) from None
        finally:
            os.close(fd)
    finally:
        os.close(dfd)


def stat_beneath(start: str, path: str, *, trusted_owner: bool = False) -> os.stat_result:
    """lstat of ``start``/``path`` (directories walked as in :func:`open_dir_beneath`)."""
    parts = _split(path)
    if not parts:
        raise Refused(f"{path}: no file name")
    dfd = open_dir_beneath(start, "/".join(parts[:-1]), trusted_owner=trusted_owner)
    try:
        return os.stat(parts[-1], dir_fd=dfd, follow_symlinks=False)
    except OSError as e:
        raise _errno_reason(e, f"{start.rstrip('/')}/{'/'.join(parts)}") from None
    finally:
        os.close(dfd)


def list_beneath(start: str, path: str, *, limit: int, trusted_owner: bool = False) -> list[str]:
    """The names in ``start``/``path`` (at most ``limit``; never a link followed). Raises Refused."""
    dfd = open_dir_beneath(start, path, trusted_owner=trusted_owner)
    try:
        out = []
        with os.scandir(dfd) as entries:
            for entry in entries:
                out.append(entry.name)
                if len(out) >= limit:
                    break
        return out
    finally:
        os.close(dfd)


# --- resolving inside a root the kernel confines (openat2 RESOLVE_IN_ROOT) ------------------------

_SYS_OPENAT2 = 437  # the same number on every architecture (the unified syscall table, Linux 5.6)
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_IN_ROOT = 0x10
_openat2 = None


def _openat2_function():
    global _openat2
    if _openat2 is None:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        function = libc.syscall
        function.restype = ctypes.c_long

        class OpenHow(ctypes.Structure):
            _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]

        def call(dirfd: int, path: bytes, flags: int, resolve: int) -> int:
            how = OpenHow(flags, 0, resolve)
            fd = function(ctypes.c_long(_SYS_OPENAT2), ctypes.c_int(dirfd), ctypes.c_char_p(path),
                          ctypes.byref(how), ctypes.c_size_t(ctypes.sizeof(how)))
            if fd < 0:
                error = ctypes.get_errno()
                raise OSError(error, os.strerror(error))
            return fd

        _openat2 = call
    return _openat2


def read_in_root(root: str, path: str, *, limit: int) -> FileRead:
    """Read ``path`` as seen by a process whose root is ``root`` (e.g. /proc/PID/root).

    The kernel resolves it with openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS): symbolic links
    are followed but ``..`` and absolute links stay inside ``root`` (Fedora's .build-id entries
    are links), and /proc magic links are refused. Kernels before 5.6 lack openat2: the path is
    then walked with :func:`read_beneath`, which refuses every link. The file must be regular,
    at most ``limit`` bytes; it is opened O_NONBLOCK. Raises :class:`Refused`.
    """
    parts = _split(path)
    if not parts:
        raise Refused(f"{path}: no file name")
    try:
        dfd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as e:
        raise _errno_reason(e, root) from None
    what = f"{root.rstrip('/')}/{'/'.join(parts)}"
    try:
        opener = _openat2_function()
        for _attempt in range(3):
            try:
                fd = opener(dfd, "/".join(parts).encode("utf-8", "surrogateescape"), _FILE_FLAGS & ~os.O_NOFOLLOW,
                            RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)
                break
            except OSError as e:
                if e.errno == errno.EAGAIN:  # a rename raced the lookup: the kernel asks to retry
                    continue
                if e.errno == errno.ENOSYS:
                    return read_beneath(root, path, limit=limit)
                if e.errno == errno.ELOOP:
                    raise Refused(f"{what}: too many links, or a /proc magic link") from None
                raise _errno_reason(e, what) from None
        else:
            raise Refused(f"{what}: renamed while it was looked up, three times")
    finally:
        os.close(dfd)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise Refused(f"{what}: not a regular file")
        return _read_regular(fd, st, limit, what)
    except OSError as e:
        raise _errno_reason(e, what) from None
    finally:
        os.close(fd)
