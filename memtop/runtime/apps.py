"""Applications users run, named in the layers without connecting to them.

- PostgreSQL: the main shared memory segment (shared_buffers and the rest, an anonymous shared
  mapping shown as ``/dev/zero (deleted)``, or ``/SYSV...`` with shared_memory_type=sysv) is
  counted in the RSS of every backend that touched it; each backend's own memory is its private
  anonymous memory. shared_buffers comes from the postmaster's command line or its
  postgresql.conf / postgresql.auto.conf, read like any file a user owns (no symlink followed).
- MariaDB/MySQL: the InnoDB buffer pool is one anonymous mapping of innodb_buffer_pool_size
  (MariaDB 10.11 maps it whole, followed by a PROT_NONE reserve); the size comes from the
  command line or the my.cnf files mariadbd reads.
- Redis: used_memory is zmalloc's counter; Debian's redis-server exports the function
  ``zmalloc_used_memory`` whose first instruction loads it (``mov rax, [rip+disp32]``), which
  tells where the counter lies: it is read from /proc/PID/mem. INFO is not asked (no connection).
"""

from __future__ import annotations

import os
import re
import struct

from memtop.format import MiB, fmt_bytes
from memtop.heap.elf import ElfError, ElfFile
from memtop.heap.memory import Mapping, TargetMemory
from memtop.model.findings import Finding, Severity
from memtop.model.runtime import Figure, Region, RuntimeReport, Unknown
from memtop.procfs import AccessDenied, NoSuchProcess, ProcfsError, read_bytes
from memtop.runtime import Target, list_dir_in_root, read_file_in_root

MAX_EXE_BYTES = 256 << 20
_UNITS = {"": 1, "b": 1, "k": 1 << 10, "kb": 1 << 10, "m": MiB, "mb": MiB, "g": 1 << 30, "gb": 1 << 30,
          "t": 1 << 40, "tb": 1 << 40}


def application_report(target: Target) -> RuntimeReport | None:
    name = os.path.basename(target.exe.removesuffix(" (deleted)"))
    if name in ("postgres", "postmaster"):
        return postgres_report(target)
    if name in ("mariadbd", "mysqld"):
        return mariadb_report(target)
    # Debian's /usr/bin/redis-server is a symlink to redis-check-rdb (one binary, chosen by argv[0]).
    if name in ("redis-server", "redis-check-rdb") and (name == "redis-server" or (
            target.cmdline and os.path.basename(target.cmdline[0].split()[0]).startswith("redis-server"))):
        return redis_report(target)
    return None


def parse_size(text: str, default_unit: int = 1) -> int | None:
    """'128MB', '96M', '16384' (in ``default_unit``), "'1GB'" -> bytes; None when it does not parse."""
    m = re.fullmatch(r"\s*['\"]?\s*(\d+)\s*([a-zA-Z]*)\s*['\"]?\s*", text)
    if not m:
        return None
    unit = m[2].lower()
    if unit not in _UNITS:
        return None
    return int(m[1]) * (_UNITS[unit] if unit else default_unit)


# --- PostgreSQL -------------------------------------------------------------------------------

def _ppid(pid: int, root) -> int | None:
    try:
        stat = read_bytes(f"{root}/{pid}/stat")
        return int(stat[stat.rindex(b")") + 2:].split()[1])
    except (ProcfsError, ValueError, IndexError):
        return None


def _cmdline(pid: int, root) -> list[str]:
    try:
        raw = read_bytes(f"{root}/{pid}/cmdline")[: 1 << 16]
    except ProcfsError:
        return []
    return [a.decode("utf-8", "surrogateescape") for a in raw.split(b"\0") if a]


def _pg_settings_from_args(args: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    i = 0
    while i < len(args):
        a = args[i]
        value = args[i + 1] if i + 1 < len(args) else None
        if a in ("-c", "-B", "-D") and value is not None:
            if a == "-c" and "=" in value:
                k, v = value.split("=", 1)
                out[k.replace("-", "_")] = v
            elif a == "-B":
                out["shared_buffers"] = value
            elif a == "-D":
                out["data_directory"] = value
            i += 2
            continue
        if a.startswith("--") and "=" in a:
            k, v = a[2:].split("=", 1)
            out[k.replace("-", "_")] = v
        i += 1
    return out


def parse_postgresql_conf(text: str) -> dict[str, str]:
    """name = value lines (postgresql.conf syntax; comments after #, quotes stripped)."""
    out = {}
    for line in text.splitlines():
        m = re.match(r"\s*([A-Za-z_][A-Za-z0-9_.]*)\s*=?\s*('(?:[^']|'')*'|[^#\s]+)", line)
        if m:
            value = m[2]
            if value.startswith("'"):
                value = value[1:-1].replace("''", "'")
            out[m[1].lower()] = value
    return out


def _postmaster(target: Target) -> tuple[int, list[str]]:
    """The postmaster's PID and command line (a backend's parent; itself when it is one)."""
    pid, args = target.pid, list(target.cmdline)
    for _ in range(2):
        if args and not args[0].startswith("postgres:"):
            return pid, args
        parent = _ppid(pid, target.root)
        if not parent:
            break
        pid, args = parent, _cmdline(parent, target.root)
    return pid, args


def _shared_buffers(target: Target, postmaster_args: list[str]) -> tuple[int | None, str]:
    args = _pg_settings_from_args(postmaster_args[1:])
    if "shared_buffers" in args:
        return parse_size(args["shared_buffers"], 8192), "the postmaster's command line"
    datadir = args.get("data_directory")
    config = args.get("config_file") or (f"{datadir.rstrip('/')}/postgresql.conf" if datadir else None)
    if not config:
        return None, "no -D or config_file on the postmaster's command line"
    settings = {}
    text, why = read_file_in_root(target, config)
    if text is None:
        return None, why or config
    settings.update(parse_postgresql_conf(text.decode("utf-8", "replace")))
    sources = [config]
    auto_dir = datadir or settings.get("data_directory")
    if auto_dir:
        auto, _ = read_file_in_root(target, f"{auto_dir.rstrip('/')}/postgresql.auto.conf")
        if auto is not None:
            settings.update(parse_postgresql_conf(auto.decode("utf-8", "replace")))
            sources.append("postgresql.auto.conf")
    if "shared_buffers" not in settings:
        return 128 * MiB, f"the default (not set in {', '.join(sources)})"
    return parse_size(settings["shared_buffers"], 8192), " + ".join(sources)


def _pg_segment(maps: list[Mapping]) -> Mapping | None:
    shared = [m for m in maps if "s" in m.perms[3:] and (m.path.startswith("/dev/zero") or m.path.startswith("/SYSV"))]
    return max(shared, key=lambda m: m.size) if shared else None


def postgres_report(target: Target) -> RuntimeReport:
    postmaster_pid, pm_args = _postmaster(target)
    is_postmaster = postmaster_pid == target.pid
    role = "postmaster" if is_postmaster else (target.cmdline[0].removeprefix("postgres:").strip() if target.cmdline else "?")
    segment = _pg_segment(target.maps)
    seg_fields = target.smaps.get(segment.start, {}) if segment else {}
    shared_buffers, sb_source = _shared_buffers(target, pm_args)
    private = sum(f.get("Anonymous", 0) for f in target.smaps.values()) if target.smaps else None
    dsm = [m for m in target.maps if re.search(r"/PostgreSQL\.\d+$", m.path)]
    figures = [
        Figure("role", "process", role, "text", "/proc/PID/cmdline (postgres sets it per backend)"),
        Figure("shared_memory_bytes", "main shared memory segment", segment.size if segment else None, "bytes",
               "maps: the largest shared /dev/zero or /SYSV mapping", None if segment else "not found in the maps"),
        Figure("shared_buffers", "shared_buffers (inside it)", shared_buffers, "bytes", sb_source,
               None if shared_buffers is not None else sb_source),
        Figure("shared_resident", "  touched by this process (in its RSS)", seg_fields.get("Rss") if segment else None,
               "bytes", "smaps Rss of the segment"),
        Figure("shared_pss", "  its proportional share (PSS)", seg_fields.get("Pss") if segment else None, "bytes",
               "smaps Pss of the segment"),
        Figure("private_bytes", "private memory of this process", private, "bytes",
               "smaps Anonymous of all its mappings (work_mem, caches, plans)"),
        Figure("dsm_bytes", "dynamic shared memory (/dev/shm/PostgreSQL.*)", sum(m.size for m in dsm), "bytes", "maps"),
    ]
    findings = []
    if is_postmaster:
        backends = _children(target)
        privs = [p for _, p in backends if p is not None]
        figures.append(Figure("backends", "child processes (backends, workers)", len(backends), "count",
                              "/proc/*/stat whose parent is the postmaster"))
        figures.append(Figure("backends_private", "  their private memory, together", sum(privs) if privs else 0, "bytes",
                              "RssAnon of each child (/proc/PID/status)"))
        if backends and segment is not None:
            findings.append(Finding(
                Severity.INFO,
                f"PostgreSQL's {fmt_bytes(segment.size)} shared segment (shared_buffers {fmt_bytes(shared_buffers)}) is "
                f"counted again in the RSS of each of its {len(backends)} processes that touched it; their private "
                f"memory together is {fmt_bytes(sum(privs))}.",
                "Add PSS, not RSS, across backends (memtop's PSS column); each backend's own memory grows with "
                "work_mem x sorts/hashes per query: a pooler (pgbouncer) keeps the number of backends low."))
    elif private is not None and private >= 64 * MiB:
        findings.append(Finding(
            Severity.WARNING, f"This backend ({role}) holds {fmt_bytes(private)} of private memory.",
            "A large sort or hash (work_mem, hash_mem_multiplier), or a long session's caches: "
            "`SELECT * FROM pg_backend_memory_contexts` in that session (PG 14+) names the contexts."))
    regions = (Region("shared_memory", "PostgreSQL shared memory", segment.start, segment.size, seg_fields.get("Rss"),
                      "the main shared segment (maps)"),) if segment else ()
    unknowns = (Unknown("what fills the shared segment besides shared_buffers",
                        "pg_shmem_allocations needs a connection; memtop does not connect"),)
    return RuntimeReport("postgres", None, "ok" if segment else "partial", None,
                         "/proc/PID/maps, smaps, cmdline; the postmaster's configuration", tuple(figures), regions,
                         unknowns, tuple(findings))


def _children(target: Target) -> list[tuple[int, int | None]]:
    out = []
    try:
        entries = os.listdir(target.root)
    except OSError:
        return out
    for entry in entries:
        if not entry.isdigit():
            continue
        pid = int(entry)
        if _ppid(pid, target.root) != target.pid:
            continue
        anon = None
        try:
            for line in read_bytes(f"{target.root}/{pid}/status").decode("ascii", "replace").splitlines():
                if line.startswith("RssAnon:"):
                    anon = int(line.split()[1]) * 1024
        except (ProcfsError, ValueError):
            pass
        out.append((pid, anon))
    return out


# --- MariaDB / MySQL --------------------------------------------------------------------------

_MYSQLD_SECTIONS = re.compile(r"^(mysqld|mariadbd|mariadb|server|mysqld-[0-9.]+|mariadb-[0-9.]+|mariadbd-[0-9.]+)$")


def parse_my_cnf(text: str, target: Target | None = None, depth: int = 0) -> dict[str, str]:
    """Options of the server's sections ([mysqld], [mariadbd], [server], [mariadb]...) with the
    files !include / !includedir name (read like any other, 3 levels deep at most)."""
    out: dict[str, str] = {}
    section = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("!include") and target is not None and depth < 3:
            word, _, arg = line.partition(" ")
            arg = arg.strip()
            if word == "!includedir":
                for name in list_dir_in_root(target, arg):
                    if name.endswith(".cnf"):
                        sub, _ = read_file_in_root(target, f"{arg.rstrip('/')}/{name}")
                        if sub is not None:
                            out.update(parse_my_cnf(sub.decode("utf-8", "replace"), target, depth + 1))
            elif word == "!include":
                sub, _ = read_file_in_root(target, arg)
                if sub is not None:
                    out.update(parse_my_cnf(sub.decode("utf-8", "replace"), target, depth + 1))
            continue
        if line.startswith("["):
            section = line.strip("[]").strip().lower()
            continue
        if section and _MYSQLD_SECTIONS.match(section) and "=" in line:
            k, v = line.split("=", 1)
            out[k.strip().replace("-", "_").lower()] = v.split("#", 1)[0].strip().strip("'\"")
    return out


def _buffer_pool_size(target: Target) -> tuple[int | None, str]:
    args = list(target.cmdline[1:])
    options: dict[str, str] = {}
    files: list[str] = []
    if "--no-defaults" not in args:
        explicit = [a.split("=", 1)[1] for a in args if a.startswith("--defaults-file=")]
        files = explicit or ["/etc/my.cnf", "/etc/mysql/my.cnf"]
        for path in files:
            text, _ = read_file_in_root(target, path)
            if text is not None:
                options.update(parse_my_cnf(text.decode("utf-8", "replace"), target))
        extra = [a.split("=", 1)[1] for a in args if a.startswith("--defaults-extra-file=")]
        for path in extra:
            text, _ = read_file_in_root(target, path)
            if text is not None:
                options.update(parse_my_cnf(text.decode("utf-8", "replace"), target))
    from_cmdline = False
    for a in args:
        if a.startswith("--") and "=" in a:
            k, v = a[2:].split("=", 1)
            if k.replace("-", "_").lower() == "innodb_buffer_pool_size":
                options["innodb_buffer_pool_size"] = v
                from_cmdline = True
    if "innodb_buffer_pool_size" in options:
        return parse_size(options["innodb_buffer_pool_size"]), ("the command line" if from_cmdline
                                                               else "the my.cnf files mariadbd reads")
    return 128 * MiB, "the default (not set on the command line or in my.cnf)"


def mariadb_report(target: Target) -> RuntimeReport:
    size, source = _buffer_pool_size(target)
    pool = None
    if size:
        for m in target.maps:
            if m.anonymous and not m.path and m.perms.startswith("rw") and m.perms.endswith("p") and m.size == size:
                pool = m
                break
    merged = None
    if size and pool is None:
        # The kernel joins the pool's mmap with an adjacent anonymous mapping of the same flags:
        # then the pool is inside the smallest mapping that can hold it, at a place not told.
        holders = [m for m in target.maps if m.anonymous and not m.path and m.perms.startswith("rw")
                   and m.perms.endswith("p") and size < m.size <= size + 256 * MiB]
        merged = min(holders, key=lambda m: m.size) if holders else None
    rss = target.smaps.get(pool.start, {}).get("Rss") if pool and target.smaps else None
    merged_rss = target.smaps.get(merged.start, {}).get("Rss") if merged and target.smaps else None
    outside = target.rss_bytes - rss if target.rss_bytes is not None and rss is not None else None
    why_not = (f"the pool shares a {fmt_bytes(merged.size)} mapping with a neighbour (the kernel merged them): "
               f"{fmt_bytes(merged_rss)} of that mapping is resident" if merged
               else f"no anonymous mapping of {fmt_bytes(size)} in the maps")
    figures = (
        Figure("buffer_pool_size", "InnoDB buffer pool size", size, "bytes", source),
        Figure("buffer_pool_resident", "buffer pool resident", rss, "bytes", "smaps Rss of its mapping",
               None if pool else why_not),
        Figure("buffer_pool_mapping_resident", "its mapping resident (with the neighbour)", merged_rss, "bytes",
               "smaps Rss of the merged mapping (an upper bound)", None if merged else "not merged"),
        Figure("outside_pool", "RSS outside the buffer pool", outside, "bytes", "VmRSS - buffer pool resident",
               None if outside is not None else why_not),
    )
    findings = []
    if pool and rss is not None and outside is not None and outside >= max(256 * MiB, rss):
        findings.append(Finding(
            Severity.WARNING,
            f"{fmt_bytes(outside)} of mariadbd's RSS lies outside its {fmt_bytes(size)} buffer pool "
            f"({fmt_bytes(rss)} of it resident).",
            "Per-connection buffers (sort_buffer_size, join_buffer_size, tmp_table_size) x connections, and glibc "
            "arenas kept after peaks (see Allocator and Arenas: MALLOC_ARENA_MAX=2 or jemalloc)."))
    regions = (Region("buffer_pool", "InnoDB buffer pool", pool.start, pool.size, rss,
                      "the anonymous mapping of innodb_buffer_pool_size"),) if pool else ()
    if merged is not None:
        regions = (Region("buffer_pool_merged", "InnoDB buffer pool and a neighbour", merged.start, merged.size,
                          merged_rss, "the smallest anonymous mapping that holds innodb_buffer_pool_size"),)
    unknowns = (Unknown("buffer pool pages used / free / dirty",
                        "SHOW ENGINE INNODB STATUS needs a connection; memtop does not connect"),)
    return RuntimeReport("mariadb", None, "ok" if pool else "partial", None,
                         "/proc/PID/maps, smaps, cmdline and my.cnf", figures, regions, unknowns, tuple(findings))


# --- Redis ------------------------------------------------------------------------------------

def _rip_load_target(code: bytes, function: int) -> int | None:
    """The address a leading ``mov rax, [rip+disp32]`` (48 8b 05 disp32) loads, else None."""
    if len(code) >= 7 and code[:3] == b"\x48\x8b\x05":
        return function + 7 + struct.unpack_from("<i", code, 3)[0]
    return None


def redis_report(target: Target) -> RuntimeReport:
    used = None
    why = None
    try:
        with open(f"{target.root}/{target.pid}/exe", "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(0)
            elf = ElfFile(f.read()) if size <= MAX_EXE_BYTES else None
    except (OSError, ElfError) as e:
        elf, why = None, f"the executable cannot be read: {e}"
    if elf is not None:
        sym = elf.symbols({"zmalloc_used_memory"}).get("zmalloc_used_memory")
        offset = elf.file_offset_of(sym) if sym else None
        if offset is None:
            why = "no zmalloc_used_memory symbol (a stripped or differently built redis-server)"
        else:
            counter = _rip_load_target(elf.data[offset:offset + 16], sym)
            if counter is None:
                why = "zmalloc_used_memory does not start with the load memtop recognises (another compiler or version)"
            else:
                bias = 0
                exe = target.exe.removesuffix(" (deleted)")
                for m in target.maps:
                    if m.path.removesuffix(" (deleted)") == exe and m.offset == 0:
                        bias = m.start - elf.first_load_vaddr()
                        break
                try:
                    with TargetMemory(target.pid, target.root) as mem:
                        used = struct.unpack("<Q", mem.read_exact(counter + bias, 8))[0]
                except (NoSuchProcess, AccessDenied, ProcfsError, OSError) as e:
                    why = getattr(e, "reason", None) or str(e)
    rss = target.rss_bytes
    ratio = rss / used if rss and used else None
    figures = (
        Figure("used_memory", "used_memory (zmalloc's counter)", used, "bytes",
               "the counter zmalloc_used_memory() returns, read in /proc/PID/mem", why),
        Figure("rss", "RSS", rss, "bytes", "VmRSS"),
        Figure("fragmentation_ratio", "RSS / used_memory (INFO's mem_fragmentation_ratio)",
               round(ratio, 2) if ratio is not None else None, "ratio", "VmRSS / used_memory",
               None if ratio is not None else "used_memory is unknown"),
    )
    findings = []
    if ratio is not None and ratio >= 1.5 and rss - used >= 64 * MiB:
        findings.append(Finding(
            Severity.WARNING,
            f"redis holds {fmt_bytes(rss)} of RSS for {fmt_bytes(used)} of data (fragmentation {ratio:.2f}): "
            "freed memory stays in the allocator's pages.",
            "With jemalloc: `CONFIG SET activedefrag yes` moves live values into fewer pages; `MEMORY PURGE` returns "
            "dirty pages now. Check the Allocator layer for what jemalloc keeps."))
    unknowns = (Unknown("maxmemory, keys, per-type memory", "INFO memory / MEMORY STATS need a connection; "
                                                             "memtop does not connect"),)
    status = "ok" if used is not None else "partial"
    return RuntimeReport("redis", None, status, None if used is not None else why,
                         "redis-server's ELF symbols and /proc/PID/mem", figures, (), unknowns, tuple(findings))
