"""Calling into a live process with gdb, driven by pygdbmi, without hurting it.

Every danger below was reproduced on gdb 13.1 / glibc 2.36 (reference/glibc-heap.md):

- a call while another thread holds the arena mutex waits for it (other threads keep running
  with gdb's default scheduler-locking, so it finishes once the lock is released);
- gdb killed during a call leaves the target to segfault later, returning into gdb's dummy
  frame: memtop never kills gdb while a call is in flight;
- a call on the thread that holds the lock deadlocks forever; SIGINT to gdb does not unwind it,
  but ``tgkill(pid, calling_tid, SIGINT)`` with ``set unwindonsignal on`` does;
- single-threaded programs skip the arena lock: calling into malloc while the program is inside
  malloc corrupts the heap instead of deadlocking.

So the recipe (:func:`open_session` + :meth:`GdbSession.call`) is:

1. before attaching, without stopping anything: the identity (PID + start time) matches, the
   process is not stopped, traced, a zombie, statically linked or using another allocator, and
   every arena mutex reads 0 through /proc/PID/mem (polled until the timeout);
2. gdb is started fast and prepared *before* the attach (no debuginfod, no auto-load, no
   automatic shared-library symbols; the executable's and libc's symbol tables are read ahead,
   libc at the load address found in /proc/PID/maps), so the process is stopped only for the
   attach, the checks, the call and the detach;
3. after attaching: the identity again, then every thread's stack: refuse when any frame is in
   the allocator; every arena mutex must still be 0;
4. the call runs on a thread parked in a syscall (/proc/PID/task/TID/syscall), with
   ``unwindonsignal on`` and SIGINT not passed to the program; a watchdog interrupts the calling
   thread with tgkill(SIGINT) on timeout (gdb 13 has no direct-call-timeout), and gdb unwinds
   the call;
5. detach, let gdb exit, then make sure the process is running (not left stopped).
"""

from __future__ import annotations

import dataclasses
import os
import re
import select
import shutil
import signal
import struct
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from memtop.format import counted
from memtop.model.process import ProcessIdentity
from memtop.procfs import PROC, NoSuchProcess, ProcfsError, read_text
from memtop.procfs.process import read_stat

# glibc's allocator entry points and internals (malloc/malloc.c, malloc/arena.c). A thread with
# any of these on its stack is inside the allocator. Without debug symbols gdb names frames after
# libc's exported symbols only, so the exported entry points (which every path into the
# allocator goes through) matter most; the internal names count when libc6-dbg is used.
ALLOCATOR_FUNCTIONS = frozenset({
    "malloc", "__libc_malloc", "__malloc", "free", "__libc_free", "cfree", "__free",
    "calloc", "__libc_calloc", "realloc", "__libc_realloc", "reallocarray", "__libc_reallocarray",
    "memalign", "__libc_memalign", "__memalign", "posix_memalign", "__posix_memalign",
    "aligned_alloc", "valloc", "__libc_valloc", "pvalloc", "__libc_pvalloc",
    "malloc_trim", "__malloc_trim", "malloc_usable_size", "__malloc_usable_size",
    "mallinfo", "mallinfo2", "__libc_mallinfo", "__libc_mallinfo2", "mallopt", "__libc_mallopt",
    "malloc_stats", "__malloc_stats", "malloc_info", "__malloc_info",
    "_int_malloc", "_int_free", "_int_realloc", "_int_memalign", "malloc_consolidate",
    "sysmalloc", "systrim", "mtrim", "tcache_init", "arena_get2", "reused_arena", "get_free_list",
    "__malloc_fork_lock_parent", "__malloc_fork_unlock_parent", "__malloc_fork_unlock_child",
})

# Frames looked at per thread: allocator frames are the innermost ones.
MAX_FRAMES = 48

# gdb options that make it start fast and leave the target alone (reference/glibc-heap.md:
# ~200 ms instead of ~660 ms): no debuginfod download, no auto-loaded scripts, no automatic
# shared-library symbol reading, no separate debug files.
GDB_FAST_OPTIONS = (
    "-iex", "set debuginfod enabled off",
    "-iex", "set auto-load off",
    "-iex", "set auto-solib-add off",
    "-iex", "set debug-file-directory /nonexistent",
    "-iex", "set pagination off",
    "-iex", "set confirm off",
    "-iex", "set print thread-events off",
    "-iex", "set print inferior-events off",
)

_LIBC_NAME = re.compile(r"/libc(?:\.so\.6|-2\.\d+\.so)$")


class GdbError(Exception):
    """Base of the failures of this module; ``str()`` is one line for the user.

    Raised by :func:`open_session`, it carries ``notes`` (what happened) and ``stopped_s`` (how
    long the target was stopped in all, None if it never was).
    """

    notes: list[str] = []
    stopped_s: float | None = None


class GdbUnavailable(GdbError):
    """gdb cannot be used here at all (not installed, no permission to trace)."""


class Refused(GdbError):
    """memtop decided not to act; nothing was done to the target."""


class Busy(Refused):
    """The target was caught inside the allocator (or with an arena lock taken) at the moment
    of attaching: a passing state, so :func:`open_session` detaches and tries again."""


class TargetGone(GdbError):
    """The process exited (or its PID now belongs to another process)."""


class CallFailed(GdbError):
    """The call was made and did not complete (error, or interrupted by the watchdog).

    ``interrupted`` says the watchdog stopped it; ``stopped_s`` how long the target was stopped.
    """

    def __init__(self, message: str, *, interrupted: bool = False):
        super().__init__(message)
        self.interrupted = interrupted


@dataclass(frozen=True, slots=True)
class LibcMapping:
    """Where glibc is loaded in the target: the file and its load bias (first mapping start)."""

    path: str  # as the target sees it
    host_path: str  # the same file from our mount namespace (/proc/PID/root/...)
    base: int


@dataclass(frozen=True, slots=True)
class AllocatorLibrary:
    """A malloc that is not glibc's (jemalloc, tcmalloc, mimalloc), as the recipe needs it:
    the library whose functions are called (by the addresses of its exported symbols, so that
    gdb never picks another library's malloc), glibc's libc for unwinding through its system
    call wrappers, and the library's code ranges: a thread with a frame there is inside the
    allocator (stripped libraries name no internal function). The allocator's own threads
    (jemalloc's background threads), parked in a system call, wait on a condition variable with
    no lock held and do not count as inside. Built by memtop.heap.allocator_calls."""

    kind: str
    library: LibcMapping
    libc: LibcMapping | None
    text_ranges: tuple[tuple[int, int], ...]
    functions: tuple[tuple[str, int], ...]  # (exported name, address in the target)
    own_threads: frozenset[str] = frozenset()
    lock_addresses: tuple[int, ...] = ()  # ints that read 0 when the allocator's global lock is free

    def function(self, name: str) -> int:
        return dict(self.functions)[name]

    def holds(self, address: int) -> bool:
        return any(start <= address < end for start, end in self.text_ranges)


@dataclass(frozen=True, slots=True)
class ThreadState:
    """One thread of the stopped target as gdb sees it."""

    gdb_id: str
    tid: int
    frames: tuple[str, ...]  # innermost first; "??" where gdb has no name
    allocator_frame: str | None  # the allocator function on its stack, if any
    addresses: tuple[int, ...] = ()  # each frame's pc, innermost first (0 where gdb gave none)


@dataclass(frozen=True, slots=True)
class SessionTimes:
    """Monotonic timestamps of one session; ``stopped_s`` is the attach-to-detach time (an upper
    bound of how long the target's threads were stopped)."""

    attach_sent: float | None = None
    detached: float | None = None
    attached: float | None = None  # -target-attach answered: every thread stopped
    detach_sent: float | None = None

    @property
    def attach_s(self) -> float | None:
        """gdb's attach: ptrace-stopping every thread and reading the thread list."""
        if self.attach_sent is None or self.attached is None:
            return None
        return self.attached - self.attach_sent

    @property
    def detach_s(self) -> float | None:
        if self.detach_sent is None or self.detached is None:
            return None
        return self.detached - self.detach_sent

    @property
    def stopped_s(self) -> float | None:
        if self.attach_sent is None or self.detached is None:
            return None
        return self.detached - self.attach_sent


# --- read-only checks, before gdb is started -----------------------------------------


# gdb before 14 saves and restores a fixed 2,688-byte XSAVE area; on a CPU with AMX the kernel's
# is larger and PTRACE_SETREGSET refuses it ("Couldn't write extended state status: Bad
# address", reproduced with gdb 13.1 on kernel 6.18): after a call the process runs on with its
# vector registers not restored. gdb 14 sizes the area from CPUID (gdb/x86-linux-nat, "xsave
# layout"). memtop refuses such a gdb on such a CPU rather than hurt the process.
GDB_MIN_WITH_AMX = 14
_gdb_checked: dict[tuple[str, int, int], str | None] = {}


def gdb_path() -> str:
    """The gdb memtop runs, or GdbUnavailable with what to do.

    ``$MEMTOP_GDB``; else the gdb beside memtop's Python (``make setup`` links the gdb it built
    there when the system's cannot call into processes on this CPU); else gdb on PATH. Root runs
    it: a gdb (or its directory) that another user can write is refused, and so is a gdb too old
    for this CPU (see GDB_MIN_WITH_AMX).
    """
    import sys

    env = os.environ.get("MEMTOP_GDB")
    beside = Path(sys.executable).parent / "gdb"
    path = env or (str(beside) if beside.exists() else shutil.which("gdb"))
    if path is None:
        raise GdbUnavailable("gdb is not installed (apt install gdb): memtop calls into a process through gdb")
    if env and not os.path.exists(env):
        raise GdbUnavailable(f"gdb is not installed at {env} (MEMTOP_GDB)")
    real = os.path.realpath(path)
    try:
        st, dir_st = os.stat(real), os.stat(os.path.dirname(real))
    except OSError as e:
        raise GdbUnavailable(f"gdb at {path}: {e.strerror}") from None
    for what, s in ((real, st), (os.path.dirname(real), dir_st)):
        if s.st_uid not in (0, os.geteuid()) or s.st_mode & 0o022:
            raise GdbUnavailable(f"refusing to run {real}: {what} can be changed by another user "
                                 f"(owner uid {s.st_uid}, mode {s.st_mode & 0o7777:o})")
    key = (real, st.st_ino, int(st.st_mtime))
    if key not in _gdb_checked:
        _gdb_checked[key] = _gdb_problem(real)
    problem = _gdb_checked[key]
    if problem is not None:
        raise GdbUnavailable(problem)
    return real


def gdb_version(path: str) -> tuple[int, int] | None:
    """``gdb --version``'s (major, minor), or None when it does not say."""
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r"^GNU gdb .*?(\d+)\.(\d+)", out, re.M)
    return (int(m.group(1)), int(m.group(2))) if m else None


def cpu_has_amx(cpuinfo: str | None = None) -> bool:
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return False
    return any(line.startswith("flags") and " amx_tile" in line for line in cpuinfo.splitlines())


def _gdb_problem(path: str) -> str | None:
    version = gdb_version(path)
    if version is None:
        return f"{path} does not answer --version like gdb"
    if version[0] < GDB_MIN_WITH_AMX and cpu_has_amx():
        return (f"gdb {version[0]}.{version[1]} cannot restore a process's registers after a call on this CPU "
                f"(AMX: its XSAVE state is larger than gdb < {GDB_MIN_WITH_AMX} knows), so memtop will not call "
                f"into processes with it; `make setup` builds gdb 16 for memtop, or set MEMTOP_GDB to gdb >= "
                f"{GDB_MIN_WITH_AMX}")
    return None


def check_identity(identity: ProcessIdentity, root: Path = PROC) -> None:
    """Raise TargetGone unless PID ``identity.pid`` is still the process that started at
    ``identity.start_ticks`` (a reused PID is another process)."""
    try:
        stat = read_stat(identity.pid, root)
    except NoSuchProcess:
        raise TargetGone(f"PID {identity.pid} has exited") from None
    except ProcfsError as e:  # AccessDenied, ParseError: refuse with the kernel's reason, never a traceback
        raise Refused(f"cannot check the identity of PID {identity.pid}: {e}") from None
    if stat.start_ticks != identity.start_ticks:
        raise TargetGone(f"PID {identity.pid} is now another process (start time changed): it was reused")
    if stat.is_zombie:
        raise TargetGone(f"PID {identity.pid} has exited (zombie, waiting for its parent)")


def check_traceable(identity: ProcessIdentity, root: Path = PROC) -> None:
    """Refuse a zombie, a stopped, traced or kernel process, or one this user may not trace."""
    pid = identity.pid
    try:
        stat = read_stat(pid, root)
        status = read_text(f"{root}/{pid}/status")
    except NoSuchProcess:
        raise TargetGone(f"PID {pid} has exited") from None
    except ProcfsError as e:
        raise Refused(f"cannot read the state of PID {pid}: {e}") from None
    if stat.is_zombie:  # before anything reads its (empty) maps: it is not "another allocator"
        raise Refused(f"PID {pid} is a zombie: it has exited and its memory is already gone (its parent has not "
                      "reaped it yet); there is nothing to trim")
    if stat.is_kernel_thread:
        raise Refused(f"PID {pid} is a kernel thread: it has no heap")
    if pid == os.getpid():
        # gdb would stop memtop itself, which then could never read gdb's answer.
        raise Refused(f"PID {pid} is this memtop: it cannot stop itself to call into itself")
    if stat.state in ("T", "t"):
        raise Refused(f"PID {pid} is stopped (state {stat.state}): memtop does not act on a stopped process; "
                      f"resume it first (kill -CONT {pid})")
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    tracer = int(fields.get("TracerPid", "0").strip() or 0)
    if tracer:
        raise Refused(f"PID {pid} is already traced by PID {tracer} (a debugger or strace): only one tracer at a time")
    euid = os.geteuid()
    if euid != 0:
        uids = fields.get("Uid", "").split()
        if not uids or any(int(u) != euid for u in uids[:3]):
            raise GdbUnavailable(f"PID {pid} belongs to uid {uids[0] if uids else '?'}: attaching needs root "
                                 f"(or CAP_SYS_PTRACE); you are uid {euid}")
        scope = _ptrace_scope()
        if scope is not None and scope >= 1:
            raise GdbUnavailable(f"kernel.yama.ptrace_scope is {scope}: only root (CAP_SYS_PTRACE) may attach to "
                                 f"a process that is not its child")


def _ptrace_scope() -> int | None:
    try:
        return int(Path("/proc/sys/kernel/yama/ptrace_scope").read_text())
    except (OSError, ValueError):
        return None


def find_libc(pid: int, root: Path = PROC) -> LibcMapping:
    """glibc's mapping in the target, or Refused with the reason (static, musl, jemalloc...).

    Which malloc is in use is decided by :func:`memtop.heap.detect.detect_allocator` (a
    preloaded allocator replaces glibc's malloc even though libc.so.6 is mapped too).
    """
    from memtop.heap.detect import detect_allocator, read_exe_header
    from memtop.heap.memory import read_maps

    try:
        maps = read_maps(pid, root)
    except NoSuchProcess:
        raise TargetGone(f"PID {pid} has exited") from None
    except ProcfsError as e:
        # e.g. AccessDenied: /proc/1/maps refused even to root (ptrace access mode check, LSM).
        raise Refused(f"cannot read the memory map of PID {pid}: {e}") from None
    allocator = detect_allocator(maps, read_exe_header(pid, root))
    if allocator.kind == "static":
        raise Refused(f"PID {pid} is statically linked (no program interpreter, no libc.so.6 mapped): there is no "
                      "shared glibc to call malloc_trim in")
    if allocator.kind != "glibc":
        what = ("memtop can only call into a dynamically linked glibc" if allocator.kind == "unknown"
                else "musl has no malloc_trim or other release call: it unmaps a group as soon as its last slot "
                     "is freed" if allocator.kind == "musl"
                else f"glibc's malloc_trim would not touch a {allocator.kind} heap")
        raise Refused(f"PID {pid} does not use glibc malloc ({allocator.evidence}): {what}")
    libc = next((m for m in maps if _LIBC_NAME.search(m.path) and m.offset == 0), None)
    if libc is None:
        raise Refused(f"PID {pid}: libc.so.6 is mapped but its first mapping was not found in /proc/{pid}/maps")
    host = f"{root}/{pid}/root{libc.path}"
    return LibcMapping(path=libc.path, host_path=host if os.path.exists(host) else libc.path, base=libc.start)


def arena_mutexes(pid: int, root: Path = PROC) -> list[int]:
    """Every arena's malloc_state address (its mutex is the int at offset 0), found read-only
    the way :func:`memtop.heap.analyze` finds them (main_arena by symbols or heuristics, then
    ``next`` round the cycle) without walking the heap. Refused when they cannot be found:
    without them the lock check cannot be made."""
    from memtop.heap import glibc
    from memtop.heap.memory import TargetMemory, read_maps
    from memtop.heap.walk import Inconsistent, arena_addresses

    try:
        maps = read_maps(pid, root)
        libc = glibc.open_libc(pid, maps, root)
        if libc is None:
            raise Refused(f"PID {pid} has no glibc mapped")
        symbols = glibc.locate(libc)
        with TargetMemory(pid, root) as mem:
            return arena_addresses(mem, symbols.main_arena)
    except NoSuchProcess:
        raise TargetGone(f"PID {pid} has exited") from None
    except (glibc.GlibcError, Inconsistent, ProcfsError, OSError) as e:
        raise Refused(f"the arenas of PID {pid} could not be found, so their locks cannot be checked: {e}") from None


def read_ints(pid: int, addresses: list[int], root: Path = PROC) -> list[int]:
    """32-bit ints at ``addresses`` in the target, read through /proc/PID/mem (no stop)."""
    out = []
    fd = os.open(f"{root}/{pid}/mem", os.O_RDONLY | os.O_CLOEXEC)
    try:
        for address in addresses:
            data = os.pread(fd, 4, address)
            if len(data) != 4:
                raise OSError(f"short read at {address:#x}")
            out.append(struct.unpack("<i", data)[0])
    finally:
        os.close(fd)
    return out


def wait_for_free_mutexes(pid: int, mutex_addresses: list[int], timeout: float, root: Path = PROC) -> None:
    """Poll every arena mutex (int at malloc_state offset 0: 0 free, 1 locked, 2 locked with
    waiters) until all are 0, without stopping the process; Refused if still held at timeout."""
    if not mutex_addresses:
        return
    deadline = time.monotonic() + timeout
    while True:
        try:
            values = read_ints(pid, mutex_addresses, root)
        except FileNotFoundError:
            raise TargetGone(f"PID {pid} has exited") from None
        except OSError as e:
            raise Refused(f"cannot read the arena mutexes of PID {pid}: {e}") from None
        held = [(a, v) for a, v in zip(mutex_addresses, values) if v != 0]
        if not held:
            return
        if time.monotonic() >= deadline:
            where = ", ".join(f"{a:#x}" for a, _ in held)
            raise Refused(f"an arena lock of PID {pid} stayed held for {timeout:.1f} s (arena {where}): a thread is "
                          "inside malloc; nothing was done, try again")
        time.sleep(0.02)


def parked_threads(pid: int, root: Path = PROC) -> list[int]:
    """Threads blocked in a system call (the first field of /proc/PID/task/TID/syscall is a
    syscall number; "running" or -1 otherwise: man 5 proc_pid_syscall). Read before attaching."""
    parked = []
    try:
        tids = sorted(int(t) for t in os.listdir(f"{root}/{pid}/task"))
    except OSError:
        return []
    for tid in tids:
        try:
            first = read_text(f"{root}/{pid}/task/{tid}/syscall").split(maxsplit=1)[0]
        except (ProcfsError, IndexError, OSError):
            continue
        if first.isdigit():
            parked.append(tid)
    return parked


def process_state(pid: int, root: Path = PROC) -> str | None:
    try:
        return read_stat(pid, root).state
    except (NoSuchProcess, ProcfsError):
        return None


def ensure_running(pid: int, root: Path = PROC, settle_s: float = 0.5) -> str | None:
    """After gdb let go: if the process is left in a group stop (state T) with no tracer, send
    SIGCONT. Returns a note for the user when memtop had to do something, else None."""
    deadline = time.monotonic() + settle_s
    while True:
        state = process_state(pid, root)
        if state is None or state not in ("T", "t"):
            return None
        if time.monotonic() >= deadline:
            break
        time.sleep(0.01)
    try:
        status = read_text(f"{root}/{pid}/status")
    except ProcfsError:
        return None
    tracer = next((line.split()[1] for line in status.splitlines() if line.startswith("TracerPid:")), "0")
    if tracer != "0":
        return f"PID {pid} is still stopped by tracer PID {tracer}"
    os.kill(pid, signal.SIGCONT)
    return f"PID {pid} was left stopped after gdb detached; memtop resumed it with SIGCONT"


# --- the gdb session -------------------------------------------------------------------


def _gdb_controller(command: list[str]):
    """A pygdbmi GdbController whose gdb runs in its own session: a Ctrl-C in memtop's
    terminal must not reach gdb (SIGINT to gdb during a call does not unwind it)."""
    from pygdbmi.gdbcontroller import GdbController
    from pygdbmi.IoManager import IoManager

    class _Controller(GdbController):
        def spawn_new_gdb_subprocess(self) -> int:
            self.gdb_process = subprocess.Popen(
                self.command, shell=False, stdout=subprocess.PIPE, stdin=subprocess.PIPE,
                stderr=subprocess.PIPE, bufsize=0, start_new_session=True,
            )
            self.io_manager = IoManager(self.gdb_process.stdin, self.gdb_process.stdout,
                                        self.gdb_process.stderr, self.time_to_check_for_additional_output_sec)
            return self.gdb_process.pid

    # time_to_check_for_additional_output_sec=0: pygdbmi otherwise waits 0.2 s after every write.
    return _Controller(command, time_to_check_for_additional_output_sec=0)


class GdbSession:
    """One gdb attached to one process. Use :func:`open_session` (it applies the recipe).

    Commands are sent with tokens and the token's result record is awaited, so unrelated
    asynchronous records never get mistaken for an answer.
    """

    def __init__(self, identity: ProcessIdentity, libc: LibcMapping, *, root: Path = PROC, gdb: str | None = None,
                 extra_symbols: tuple[LibcMapping, ...] = ()):
        self.identity = identity
        self.pid = identity.pid
        self.libc = libc
        self.extra_symbols = extra_symbols
        self.root = Path(root)
        self._gdb = gdb or gdb_path()
        self._token = 0
        self._controller = None
        self._call_in_flight = False
        self.attached = False
        self.exited = False
        self.times = SessionTimes()
        self.earlier_stops_s = 0.0  # windows of earlier attaches (a Busy retry detaches first)
        self.notes: list[str] = []  # what happened, in order, for the user and the audit log
        self.stray_gdb_pid: int | None = None  # set when gdb had to be left running (see close)

    # --- low level ---
    def start(self, timeout: float) -> None:
        """Start gdb and read symbols before attaching (this costs the target nothing)."""
        command = [self._gdb, "--nx", "--quiet", "--interpreter=mi3", *GDB_FAST_OPTIONS]
        self._controller = _gdb_controller(command)
        exe = f"{self.root}/{self.pid}/exe"
        self.command(f"-file-exec-and-symbols {_mi_quote(exe)}", timeout, what="reading the executable")
        # Only libc's own symbol table and unwind info: where malloc_trim is, and how to unwind
        # through allocator frames. Loaded at its runtime address from /proc/PID/maps.
        self.console(f"add-symbol-file {_cli_quote(self.libc.host_path)} -o {self.libc.base:#x}", timeout,
                     what="reading libc's symbols")
        for extra in self.extra_symbols:  # another allocator's library sits beside libc
            self.console(f"add-symbol-file {_cli_quote(extra.host_path)} -o {extra.base:#x}", timeout,
                         what=f"reading the symbols of {os.path.basename(extra.path)}")
        self.command("-gdb-set unwindonsignal on", timeout)
        # The watchdog's SIGINT must unwind the call and never reach the program's handler.
        self.console("handle SIGINT stop print nopass", timeout)

    @property
    def gdb_pid(self) -> int | None:
        return self._controller.gdb_process.pid if self._controller and self._controller.gdb_process else None

    def _send(self, command: str) -> int:
        self._token += 1
        token = self._token
        self._controller.write(f"{token}{command}", timeout_sec=5, read_response=False)
        return token

    def _wait(self, token: int, timeout: float | None, *, on_tick=None) -> dict:
        """Records until the result record of ``token``; async records are looked at on the way."""
        process = self._controller.gdb_process
        streams = [process.stdout, process.stderr]
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            remaining = 0.05 if deadline is None else max(0.0, min(0.05, deadline - time.monotonic()))
            ready, _, _ = select.select(streams, [], [], remaining)
            if ready:
                for record in self._controller.get_gdb_response(timeout_sec=0, raise_error_on_timeout=False):
                    self._look_at(record)
                    if record.get("token") == token and record.get("type") == "result":
                        return record
            if process.poll() is not None:
                raise GdbError(f"gdb exited unexpectedly (status {process.returncode})")
            if on_tick is not None:
                on_tick()
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError

    def _look_at(self, record: dict) -> None:
        if record.get("type") == "notify" and record.get("message") == "thread-group-exited":
            self.exited = True
        if record.get("type") == "notify" and record.get("message") == "stopped":
            reason = (record.get("payload") or {}).get("reason", "")
            if reason.startswith("exited"):
                self.exited = True

    def command(self, command: str, timeout: float, *, what: str | None = None) -> dict:
        """Run one MI command that does not resume the target; GdbError on ^error or timeout."""
        token = self._send(command)
        try:
            record = self._wait(token, timeout)
        except TimeoutError:
            raise GdbError(f"gdb did not answer {what or command.split()[0]} within {timeout:.1f} s") from None
        if record.get("message") == "error":
            msg = (record.get("payload") or {}).get("msg", "unknown error")
            raise GdbError(f"{what or command.split()[0]}: {msg}")
        return record

    def console(self, cli: str, timeout: float, *, what: str | None = None) -> dict:
        return self.command(f"-interpreter-exec console {_mi_quote(cli)}", timeout, what=what)

    # --- attach / inspect / call / detach ---
    @property
    def stopped_s(self) -> float | None:
        """How long the target was stopped in all, over every attach of this session."""
        current = self.times.stopped_s
        if current is None:
            return self.earlier_stops_s or None
        return self.earlier_stops_s + current

    def attach(self, timeout: float) -> None:
        if self.times.stopped_s is not None:
            self.earlier_stops_s += self.times.stopped_s
        self.times = SessionTimes(attach_sent=time.monotonic())
        try:
            self.command(f"-target-attach {self.pid}", timeout, what="attaching")
            self.times = dataclasses.replace(self.times, attached=time.monotonic())
        except GdbError as e:
            if not os.path.exists(f"{self.root}/{self.pid}") or "No such process" in str(e):
                raise TargetGone(f"PID {self.pid} exited while gdb attached; nothing was done") from None
            if "Operation not permitted" in str(e):
                raise GdbUnavailable(f"the kernel refused to let gdb trace PID {self.pid} (ptrace: Operation not "
                                     "permitted): needs root or CAP_SYS_PTRACE, and no other tracer") from None
            raise
        self.attached = True
        self.notes.append(f"attached to PID {self.pid}")
        # The PID cannot be reused while we hold it traced: checking here settles identity.
        check_identity(self.identity, self.root)

    def threads(self, timeout: float) -> list[ThreadState]:
        """Every thread with its innermost frames (the target is stopped)."""
        record = self.command("-thread-info", timeout, what="listing threads")
        out = []
        for thread in (record.get("payload") or {}).get("threads", []):
            gdb_id = thread["id"]
            match = re.search(r"LWP (\d+)", thread.get("target-id", ""))
            tid = int(match.group(1)) if match else self.pid
            frames_record = self.command(f"-stack-list-frames --thread {gdb_id} 0 {MAX_FRAMES - 1}", timeout,
                                         what="reading a thread's stack")
            stack = (frames_record.get("payload") or {}).get("stack", [])
            frames = tuple(f.get("func", "??") for f in stack)
            addresses = tuple(_int_or_zero(f.get("addr")) for f in stack)
            allocator = next((f for f in frames if f in ALLOCATOR_FUNCTIONS), None)
            out.append(ThreadState(gdb_id=gdb_id, tid=tid, frames=frames, allocator_frame=allocator,
                                   addresses=addresses))
        return out

    def call(self, expression: str, thread: ThreadState, timeout: float, *, escalate_every_s: float = 1.0,
             give_up_after_s: float = 30.0) -> str:
        """Evaluate ``expression`` (a function call) on ``thread``; return gdb's value text.

        If it has not returned after ``timeout`` s, the watchdog sends SIGINT to the calling
        thread (tgkill), again every ``escalate_every_s``: gdb stops the thread, and with
        unwindonsignal on, unwinds the call to where it was. gdb is never killed while the call
        is in flight; if even that does not end it after ``give_up_after_s`` more seconds, the
        session is abandoned with gdb left running (see :meth:`close`), which is the only way
        that does not crash the target.
        """
        token = self._send(f"-data-evaluate-expression --thread {thread.gdb_id} {_mi_quote(expression)}")
        self._call_in_flight = True
        started = time.monotonic()
        interrupts = 0
        last_interrupt = 0.0

        def watchdog() -> None:
            nonlocal interrupts, last_interrupt
            now = time.monotonic()
            if now - started < timeout:
                return
            if now - last_interrupt >= escalate_every_s:
                if now - started > timeout + give_up_after_s:
                    raise _Abandon
                _tgkill(self.pid, thread.tid, signal.SIGINT)
                interrupts += 1
                last_interrupt = now
                if interrupts == 1:
                    self.notes.append(f"the call did not return within {timeout:.1f} s: interrupted thread "
                                      f"{thread.tid} with SIGINT (tgkill) so that gdb unwinds it")

        try:
            while True:
                try:
                    record = self._wait(token, None, on_tick=watchdog)
                    break
                except KeyboardInterrupt:
                    # The user pressed Ctrl-C: treat it as the timeout, never as "kill gdb".
                    timeout = 0.0
                    self.notes.append("interrupted by the user")
        except _Abandon:
            self.stray_gdb_pid = self.gdb_pid
            raise CallFailed(f"the call in PID {self.pid} did not unwind after SIGINT; gdb (PID {self.gdb_pid}) was "
                             "left attached because killing it would crash the target", interrupted=True) from None
        finally:
            self._call_in_flight = self.stray_gdb_pid is not None
        if record.get("message") == "error":
            msg = (record.get("payload") or {}).get("msg", "unknown error")
            if self.exited or "exited" in msg:
                raise TargetGone(f"PID {self.pid} exited during the call") from None
            if interrupts:
                raise CallFailed(f"the call was interrupted after {timeout:.1f} s and unwound; the process is unchanged "
                                 f"by it ({_first_line(msg)})", interrupted=True)
            raise CallFailed(f"the call failed: {_first_line(msg)}")
        return (record.get("payload") or {}).get("value", "")

    def read_memory(self, address: int, length: int, timeout: float) -> bytes:
        record = self.command(f"-data-read-memory-bytes {address:#x} {length}", timeout, what="reading memory")
        chunks = (record.get("payload") or {}).get("memory", [])
        data = b"".join(bytes.fromhex(c["contents"]) for c in chunks)
        if len(data) != length:
            raise GdbError(f"short read of target memory at {address:#x}")
        return data

    def detach(self, timeout: float) -> None:
        if not self.attached:
            return
        self.times = dataclasses.replace(self.times, detach_sent=time.monotonic())
        try:
            self.command("-target-detach", timeout, what="detaching")
        finally:
            self.times = dataclasses.replace(self.times, detached=time.monotonic())
            self.attached = False
            self.notes.append("detached")

    def close(self, timeout: float = 5.0) -> None:
        """Detach if needed and end gdb. gdb is only terminated when no call is in flight."""
        if self._controller is None or self._controller.gdb_process is None:
            return
        process = self._controller.gdb_process
        if self._call_in_flight:
            # Killing gdb now would crash the target (reference/glibc-heap.md); leave it.
            self.stray_gdb_pid = process.pid
            return
        try:
            if self.attached and process.poll() is None:
                self.detach(timeout)
        except GdbError as e:
            self.notes.append(f"detach failed: {e}")
        try:
            if process.poll() is None:
                self._send("-gdb-exit")
                process.wait(timeout=timeout)
        except (subprocess.TimeoutExpired, OSError, ValueError):
            pass
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for stream in (process.stdin, process.stdout, process.stderr):
            try:
                stream.close()
            except (OSError, ValueError):
                pass
        self._controller.gdb_process = None


class _Abandon(Exception):
    pass


_libc_handle = None


def _tgkill(pid: int, tid: int, sig: int) -> None:
    """tgkill(2): a signal to exactly one thread of ``pid`` (os.kill would pick any thread)."""
    import ctypes

    global _libc_handle
    if _libc_handle is None:
        _libc_handle = ctypes.CDLL(None, use_errno=True)
    if hasattr(_libc_handle, "tgkill"):
        _libc_handle.tgkill(pid, tid, sig)
    else:  # glibc < 2.30: the raw syscall (SYS_tgkill = 234 on x86_64)
        _libc_handle.syscall(234, pid, tid, sig)


def _int_or_zero(text) -> int:
    try:
        return int(text, 0)
    except (TypeError, ValueError):
        return 0


def _mi_quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _cli_quote(path: str) -> str:
    return path.replace("\\", "\\\\").replace(" ", "\\ ")


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else text


# --- the recipe ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Preflight:
    """What the read-only checks found, before anything was stopped."""

    libc: LibcMapping
    parked_tids: tuple[int, ...]
    allocator: AllocatorLibrary | None = None  # another malloc than glibc's: the library called into
    thread_names: tuple[tuple[int, str], ...] = ()  # (tid, comm), read with parked_tids


def preflight(identity: ProcessIdentity, *, mutex_addresses: list[int], timeout: float, root: Path = PROC,
              allocator: AllocatorLibrary | None = None) -> Preflight:
    """Step 1 of the recipe (see module doc). Raises Refused / TargetGone / GdbUnavailable.
    With ``allocator``, the calls go into that library instead of glibc's."""
    gdb_path()
    check_identity(identity, root)
    check_traceable(identity, root)
    libc = find_libc(identity.pid, root) if allocator is None else allocator.library
    wait_for_free_mutexes(identity.pid, mutex_addresses, timeout, root)
    check_identity(identity, root)
    return Preflight(libc=libc, parked_tids=tuple(parked_threads(identity.pid, root)), allocator=allocator,
                     thread_names=_thread_names(identity.pid, root) if allocator is not None else ())


def _thread_names(pid: int, root: Path) -> tuple[tuple[int, str], ...]:
    out = []
    try:
        tids = os.listdir(f"{root}/{pid}/task")
    except OSError:
        return ()
    for tid in tids:
        try:
            out.append((int(tid), read_text(f"{root}/{pid}/task/{tid}/comm").strip()))
        except (ProcfsError, OSError, ValueError):
            continue
    return tuple(out)


@dataclass
class StoppedTarget:
    """The target, attached and checked: threads are known, none is inside the allocator, and
    ``calling_thread`` is where calls go. Returned by :func:`open_session`."""

    session: GdbSession
    threads: list[ThreadState]
    calling_thread: ThreadState
    notes: list[str] = field(default_factory=list)


ATTEMPTS = 3


def open_session(identity: ProcessIdentity, *, mutex_addresses: list[int], timeout: float,
                 root: Path = PROC, attempts: int = ATTEMPTS, allocator: AllocatorLibrary | None = None) -> StoppedTarget:
    """Steps 1-3 of the recipe: returns the target stopped and checked, or raises (with the
    target detached and running again). The caller calls, then :func:`finish_session`.

    A busy program is often inside malloc at any given instant: when the attach catches it
    there (:class:`Busy`), memtop detaches, waits a moment and attaches again with the same gdb,
    up to ``attempts`` times within ``timeout``; each try stops the process once, briefly.
    """
    deadline = time.monotonic() + timeout
    pre = preflight(identity, mutex_addresses=mutex_addresses, timeout=timeout, root=root, allocator=allocator)
    extra = ()
    if allocator is not None and allocator.libc is not None:
        # The allocator's library is the one called; glibc's symbols unwind its syscall wrappers.
        extra = (allocator.libc,)
    session = GdbSession(identity, pre.libc, root=root, extra_symbols=extra)
    try:
        session.start(max(timeout, 10.0))
        for attempt in range(1, attempts + 1):
            check_identity(identity, root)
            session.attach(max(0.5, deadline - time.monotonic()))
            try:
                return _checked(session, identity, pre, mutex_addresses, timeout)
            except Busy as e:
                session.detach(timeout)
                note = ensure_running(identity.pid, root)
                if note:
                    session.notes.append(note)
                remaining = deadline - time.monotonic()
                if attempt == attempts or remaining < 0.3:
                    raise Busy(f"{e} (tried {counted(attempt, 'time')})") from None
                session.notes.append(f"attempt {attempt}: {e}; detached and retried")
                time.sleep(min(0.1 * attempt, remaining / 2))
                wait_for_free_mutexes(identity.pid, mutex_addresses, max(0.0, deadline - time.monotonic()), root)
                pre = Preflight(libc=pre.libc, parked_tids=tuple(parked_threads(identity.pid, root)),
                                allocator=pre.allocator, thread_names=pre.thread_names)
        raise AssertionError("unreachable")
    except BaseException as e:
        finish_session(session)
        if isinstance(e, GdbError):
            # What happened before the refusal (attaches, retries) travels with it.
            e.notes = list(session.notes)
            e.stopped_s = session.stopped_s
        raise


def _checked(session: GdbSession, identity: ProcessIdentity, pre: Preflight, mutex_addresses: list[int],
             timeout: float) -> StoppedTarget:
    """Step 3, with the target stopped: no thread inside the allocator, every arena lock free."""
    root = session.root
    threads = session.threads(timeout)
    inside = [t for t in threads if t.allocator_frame]
    allocator = pre.allocator
    own = set()
    if allocator is not None:
        names = dict(pre.thread_names)
        # The allocator's own threads parked in a system call wait on a condition variable with
        # no lock held (jemalloc's background_thread_sleep): they may stay where they are.
        own = {t.tid for t in threads if names.get(t.tid) in allocator.own_threads and t.tid in pre.parked_tids}
        for t in threads:
            if t.tid in own or t in inside:
                continue
            frame = next((a for a in t.addresses if allocator.holds(a)), None)
            if frame is not None:
                inside.append(ThreadState(t.gdb_id, t.tid, t.frames, f"{allocator.kind} code at {frame:#x}", t.addresses))
    if inside:
        t = inside[0]
        raise Busy(f"thread {t.tid} of PID {identity.pid} is inside the allocator ({t.allocator_frame}); "
                   "calling malloc now could corrupt the heap: nothing was done")
    if mutex_addresses:
        try:
            values = read_ints(identity.pid, mutex_addresses, root)
        except OSError as e:
            raise Refused(f"cannot read the arena mutexes of PID {identity.pid}: {e}") from None
        if any(values):
            raise Busy(f"an arena lock of PID {identity.pid} was taken as gdb attached: nothing was done")
    by_tid = {t.tid: t for t in threads}
    # The main thread first when it is parked: it is the one most programs leave idle.
    order = sorted(pre.parked_tids, key=lambda tid: tid != identity.pid)
    calling = next((by_tid[tid] for tid in order if tid in by_tid and tid not in own), None)
    if calling is None:
        calling = by_tid.get(identity.pid, threads[0])
        session.notes.append(f"no thread was parked in a system call; calling from thread {calling.tid}")
    return StoppedTarget(session=session, threads=threads, calling_thread=calling)


def finish_session(session: GdbSession) -> list[str]:
    """Step 5: detach, end gdb, make sure the process runs. Returns the session's notes."""
    try:
        session.close()
    finally:
        if session.stray_gdb_pid is None:
            note = ensure_running(session.pid, session.root)
            if note:
                session.notes.append(note)
    return session.notes


# --- malloc_info -----------------------------------------------------------------------


def fetch_malloc_info(identity: ProcessIdentity, timeout: float, *, mutex_addresses: list[int] | None = None,
                      root: Path = PROC) -> str:
    """malloc_info(0, fp)'s XML from the target, without touching its stdout, stderr or files.

    In the target: ``open_memstream`` gives a FILE that writes to a malloc'd buffer; malloc_info
    writes there (it releases each arena lock before writing, so it cannot self-deadlock);
    fclose stores the buffer pointer and size; memtop copies the buffer out and frees it. It
    allocates a little in the target. ``mutex_addresses`` default (or empty): :func:`arena_mutexes`.
    Raises the errors of this module (Refused, TargetGone, GdbUnavailable, CallFailed, GdbError).
    """
    if not mutex_addresses:  # None, or an empty list from a heap walk that failed: find them here
        check_identity(identity, root)
        find_libc(identity.pid, root)  # a clear refusal for static / other allocators first
        mutex_addresses = arena_mutexes(identity.pid, root)
    stopped = open_session(identity, mutex_addresses=list(mutex_addresses), timeout=timeout, root=root)
    session, thread = stopped.session, stopped.calling_thread
    try:
        # Two words in the target for open_memstream's out-parameters (char **ptr, size_t *size).
        cells = int(session.call("(unsigned long)((void *(*)(unsigned long))malloc)(16)", thread, timeout), 0)
        if cells == 0:
            raise CallFailed("malloc(16) in the target returned NULL")
        try:
            session.call(f"((void *(*)(void *, int, unsigned long))memset)((void *){cells:#x}, 0, 16)", thread, timeout)
            fp = int(session.call(f"(unsigned long)((void *(*)(void *, void *))open_memstream)((void *){cells:#x}, "
                                  f"(void *){cells + 8:#x})", thread, timeout), 0)
            if fp == 0:
                raise CallFailed("open_memstream in the target returned NULL")
            status = int(session.call(f"((int (*)(int, void *))malloc_info)(0, (void *){fp:#x})", thread, timeout), 0)
            session.call(f"((int (*)(void *))fclose)((void *){fp:#x})", thread, timeout)
            buf, size = struct.unpack("<QQ", session.read_memory(cells, 16, timeout))
            try:
                xml = session.read_memory(buf, size, timeout) if size else b""
            finally:
                if buf:
                    session.call(f"((void (*)(void *))free)((void *){buf:#x})", thread, timeout)
        finally:
            session.call(f"((void (*)(void *))free)((void *){cells:#x})", thread, timeout)
        if status != 0:
            raise CallFailed(f"malloc_info returned {status}")
        return xml.decode("utf-8", "replace")
    finally:
        finish_session(session)
