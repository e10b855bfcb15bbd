"""Arena cap, tuning state and the arena-explosion diagnosis, from the heap walk.

Pure functions over model records (the walk's :class:`~memtop.model.heap.HeapReport`, the
environment, the census), plus :func:`analyze_arenas`, which reads what they need for one
process. The glibc behaviour relied on is cited where it is used.
"""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

from memtop.format import counted, exact_bytes
from memtop.model.arenas import (
    AllocatorEnv,
    AnonCensus,
    ArenaAnalysis,
    ArenaCap,
    ArenaDelta,
    MallocInfo,
    SavingPrediction,
    TuningState,
)
from memtop.model.findings import Finding, Severity
from memtop.procfs import PAGE_SIZE, PROC, AccessDenied, NoSuchProcess, ProcfsError, read_bytes, read_text

# malloc.c defaults on 64-bit (checked against mp_ of a live process with libc6-dbg, 2.36).
DEFAULT_MMAP_THRESHOLD = 128 * 1024
DEFAULT_TRIM_THRESHOLD = 128 * 1024
DEFAULT_TOP_PAD = 128 * 1024
DEFAULT_MMAP_THRESHOLD_MAX = 32 << 20  # 4 MiB * sizeof(long): the dynamic threshold's ceiling
ARENAS_PER_CORE = 8  # arena.c NARENAS_FROM_NCORES: 8 on 64-bit (2 on 32-bit)

# Environment variables read by glibc's malloc (tunables with an env alias, elf/dl-tunables.list).
MALLOC_ENV_VARS = (
    "MALLOC_ARENA_MAX",
    "MALLOC_ARENA_TEST",
    "MALLOC_MMAP_THRESHOLD_",
    "MALLOC_TRIM_THRESHOLD_",
    "MALLOC_TOP_PAD_",
    "MALLOC_MMAP_MAX_",
    "MALLOC_PERTURB_",
    "MALLOC_CHECK_",
    "MALLOC_TCACHE_MAX",  # not an alias in 2.36, kept when set: people try it
)

# The "arena explosion" finding: at least this many thread arenas, and a saving worth the change.
EXPLOSION_MIN_THREAD_ARENAS = 3
EXPLOSION_MIN_SAVING = 8 << 20
EXPLOSION_MIN_SAVING_OF_RSS = 0.10
CONCENTRATION = 0.80


# --- the environment -------------------------------------------------------------------------------


def allocator_env(environ: dict[str, str] | None, reason: str | None = None) -> AllocatorEnv:
    """The malloc settings in an environment (None: unreadable, with ``reason``)."""
    if environ is None:
        return AllocatorEnv(readable=False, reason=reason)
    malloc_vars = tuple((k, environ[k]) for k in MALLOC_ENV_VARS if k in environ)
    raw = environ.get("GLIBC_TUNABLES")
    tunables: list[tuple[str, str]] = []
    if raw is not None:
        # "glibc.malloc.arena_max=2:glibc.malloc.tcache_count=0" (elf/dl-tunables.c parse_tunables)
        for item in raw.split(":"):
            name, sep, value = item.partition("=")
            if sep and name.startswith("glibc.malloc."):
                tunables.append((name, value))
    return AllocatorEnv(readable=True, reason=None, malloc_vars=malloc_vars, tunables=tuple(tunables),
                        glibc_tunables=raw)


def parse_cpu_list(text: str) -> int | None:
    """Count the CPUs of a list such as ``0-3,8,10-11`` (Cpus_allowed_list in /proc/PID/status)."""
    count = 0
    text = text.strip()
    if not text:
        return None
    for part in text.split(","):
        lo, sep, hi = part.partition("-")
        try:
            count += (int(hi) - int(lo) + 1) if sep else (int(lo) >= 0)
        except ValueError:
            return None
    return count


def arena_cap(arena_max: int | None, arena_test: int | None, cpus: int | None) -> ArenaCap:
    """The most arenas (main included) glibc will create: arena.c arena_get2().

    With mp_.arena_max set, that is the limit. Otherwise arenas are created freely while
    ``narenas <= arena_test``; past that the limit becomes NARENAS_FROM_NCORES(n) = 8 x n, with n
    from __get_nprocs_sched() (the calling thread's affinity mask, glibc >= 2.35), so the most
    arenas are max(arena_test + 1, 8 x n).
    """
    if arena_max:
        return ArenaCap(limit=arena_max, cpus=cpus, basis=f"mp_.arena_max = {arena_max}")
    if cpus is None:
        return ArenaCap(limit=None, cpus=None, basis="8 x CPUs, CPU count unknown")
    test = arena_test if arena_test is not None else ARENAS_PER_CORE
    limit = max(test + 1, ARENAS_PER_CORE * cpus)
    basis = f"{ARENAS_PER_CORE} x {cpus} CPU{'s' if cpus != 1 else ''}, mp_.arena_max unset"
    if limit != ARENAS_PER_CORE * cpus:
        basis = f"arena_test + 1 with {cpus} CPU{'s' if cpus != 1 else ''}, mp_.arena_max unset"
    return ArenaCap(limit=limit, cpus=cpus, basis=basis)


# --- tuning ----------------------------------------------------------------------------------------


def tuning_state(tunables) -> TuningState | None:
    """The thresholds of mp_ and what they mean. ``tunables`` is the walk's mp_ record."""
    if tunables is None:
        return None
    mmap_threshold = tunables.mmap_threshold
    trim_threshold = tunables.trim_threshold
    top_pad = tunables.top_pad
    dynamic = not tunables.no_dyn_threshold
    moved = dynamic and mmap_threshold != DEFAULT_MMAP_THRESHOLD
    notes = []
    if moved:
        # malloc.c __libc_free: freeing an mmapped chunk larger than the threshold (and at most
        # DEFAULT_MMAP_THRESHOLD_MAX) raises mmap_threshold to its size and trim_threshold to twice that.
        notes.append(
            f"the dynamic mmap threshold has moved from 128 KiB to {exact_bytes(mmap_threshold)}: a freed mmapped "
            f"chunk raised it, so allocations up to that size now come from the arenas and stay there after "
            f"free(); trim_threshold followed it to {exact_bytes(trim_threshold)}")
    elif not dynamic:
        notes.append(
            f"the thresholds were set explicitly (mallopt or MALLOC_*_ / GLIBC_TUNABLES), which turns the "
            f"dynamic mmap threshold off: mmap_threshold stays at {exact_bytes(mmap_threshold)}")
    else:
        notes.append("mmap_threshold is at its 128 KiB default and has not moved")
    if trim_threshold != 2 * mmap_threshold or not moved:
        if trim_threshold != DEFAULT_TRIM_THRESHOLD and not moved:
            notes.append(f"trim_threshold is {exact_bytes(trim_threshold)} (default 128 KiB): free() gives the top "
                         "of the main heap back only once it is larger than that")
    if top_pad != DEFAULT_TOP_PAD:
        notes.append(f"top_pad is {exact_bytes(top_pad)} (default 128 KiB): every heap extension asks for that much extra")
    return TuningState(
        mmap_threshold=mmap_threshold,
        trim_threshold=trim_threshold,
        top_pad=top_pad,
        dynamic_threshold=dynamic,
        threshold_moved=moved,
        n_mmaps=getattr(tunables, "n_mmaps", None),
        notes=tuple(notes),
    )


def _mib(value: int | float) -> str:
    return f"{value / (1 << 20):.1f} MiB"


# --- the arena-explosion prediction ----------------------------------------------------------------


def arena_live_bytes(arena) -> int:
    """Bytes an arena holds for the program: its chunks in use. The walk's in_use includes the
    chunks parked in tcache (as mallinfo's uordblks does): they belong to their thread whatever
    arena it uses. Fastbin chunks are free: any allocation of their size in the arena takes them,
    and malloc_consolidate merges them (malloc.c), so they are slack, not live data."""
    return arena.in_use_bytes or 0


def arena_slack_bytes(arena) -> int:
    """The arena's free-but-resident memory: resident pages minus the chunks in use (free chunks
    in bins and fastbins, and the touched part of top). In-use chunks whose pages were never
    touched make that an underestimate, so the resident whole pages inside free chunks and top
    (pagemap) are its floor."""
    resident = arena.resident_bytes or 0
    pages = (arena.free_resident_bytes or 0) + (arena.top_resident_bytes or 0)
    return min(resident, max(resident - arena_live_bytes(arena), pages))


def arena_threads(arena) -> int:
    """Threads that share the arena: attached_threads, at least one (an arena whose threads have
    all exited was still made by one)."""
    return max(1, arena.attached_threads or 0)


# How much of the threads' peaks of use are assumed to coincide, when nothing says otherwise.
OVERLAP_UNKNOWN = 0.5
OVERLAP_UNKNOWN_BASIS = ("one walk cannot tell whether the threads' peaks came at the same time or in turns; "
                         "the estimate assumes half of them coincide")
OVERLAP_RUBY_BASIS = ("Ruby (MRI) runs one thread at a time, for up to 100 ms each (the GVL), and its garbage "
                      "collector frees what they allocated: between two collections mostly one thread has "
                      "allocated, so the threads' peaks take turns")


def assumed_overlap(runtime_kind: str | None) -> tuple[float, str]:
    """The share of the threads' peaks taken to coincide, and why (see predict_saving)."""
    if runtime_kind == "ruby":
        return 0.0, OVERLAP_RUBY_BASIS
    return OVERLAP_UNKNOWN, OVERLAP_UNKNOWN_BASIS


def capped_slack(arenas, overlap: float) -> int:
    """The free-but-resident memory two arenas would keep, at ``overlap`` (0..1).

    Each arena's slack is taken as the peaks of its threads (k = arena_threads) of which a share
    ``overlap`` coincided: ``slack = burst x (1 + overlap x (k - 1))``, which gives one thread's
    burst. Under the cap all threads share two arenas; each keeps the largest burst of its threads
    plus ``overlap`` of the others': ``(1 - overlap) x (two largest bursts) + overlap x (all bursts)``.
    At 0 (turns) that is the two largest bursts; at 1 (together) all the slack there is now.
    """
    bursts: list[tuple[float, int]] = []
    for arena in arenas:
        k = arena_threads(arena)
        bursts.append((arena_slack_bytes(arena) / (1 + overlap * (k - 1)), k))
    bursts.sort(reverse=True)
    largest = bursts[0][0] + (bursts[0][0] if bursts[0][1] > 1 else bursts[1][0] if len(bursts) > 1 else 0)
    total = sum(b * k for b, k in bursts)
    return round((1 - overlap) * largest + overlap * total)


def predict_saving(arenas, runtime_kind: str | None = None, overlap: float | None = None) -> SavingPrediction | None:
    """The RSS that capping the process at two arenas (MALLOC_ARENA_MAX=2) would save.

    Model (checked against two real runs of the same load by bench/arena_cap.py). Under the cap
    every thread shares the main arena or one thread arena (arena.c reused_arena hands them out
    in turn), so the main arena takes its share of the threads too. Each arena holds:

    - the live data (chunks in use, tcache included) of its threads: redistributed, not saved;
    - free-but-resident memory (bins, fastbins, the touched part of top: arena_slack_bytes),
      left by the peaks of use of its threads. Free chunks are reused by any thread of the same
      arena, so peaks that come in turns share that memory, and peaks that coincide need it side
      by side (capped_slack). free() keeps a top below trim_threshold in every arena, capped or
      not (heap_trim, systrim): a top is part of its arena's slack.

    So ``saving = sum(slack now) - capped_slack(overlap)``: ``saving_high_bytes`` at overlap 0
    (turns), ``saving_low_bytes`` at 1 (together, about nothing), ``saving_bytes`` at the assumed
    overlap (assumed_overlap). Chunks in use that were never touched are not resident and are
    counted as such. Returns None when the walk has no resident figures.
    """
    if not arenas or any(a.resident_bytes is None for a in arenas):
        return None
    threads = [a for a in arenas if not a.is_main]
    basis_overlap = None
    if overlap is None:
        overlap, basis_overlap = assumed_overlap(runtime_kind)
    slack = sum(arena_slack_bytes(a) for a in arenas)
    resident = sum(a.resident_bytes for a in arenas)
    live = sum(arena_live_bytes(a) for a in arenas)

    def saving_at(c: float) -> int:
        if len(arenas) <= 2:
            return 0  # already within the cap
        return max(0, slack - capped_slack(arenas, c))

    saving, low, high = saving_at(overlap), saving_at(1.0), saving_at(0.0)
    kept = slack - saving if len(arenas) > 2 else slack
    # How few arenas hold CONCENTRATION of the live data (all arenas, the largest first).
    concentration = 0
    running = 0
    for value in sorted((arena_live_bytes(a) for a in arenas), reverse=True):
        if live and running >= CONCENTRATION * live:
            break
        running += value
        concentration += 1
    thread_resident = sum(a.resident_bytes for a in threads)
    thread_live = sum(arena_live_bytes(a) for a in threads)
    basis = (f"the {len(arenas)} arenas hold {_mib(resident)} resident: {_mib(live)} in use and {_mib(slack)} free "
             f"but kept; with two arenas the data in use stays and the free memory left by the threads' peaks is "
             f"shared: {_mib(kept)} would stay ({_mib(high)} saved if the peaks take turns, {_mib(low)} if they "
             f"coincide; {basis_overlap or f'{overlap:.0%} of them assumed to coincide'})")
    return SavingPrediction(
        thread_arenas=len(threads),
        thread_resident_bytes=thread_resident,
        thread_live_bytes=thread_live,
        kept_slack_bytes=kept,
        saving_bytes=saving,
        concentration_arenas=concentration,
        basis=basis,
        saving_low_bytes=low,
        saving_high_bytes=high,
        overlap=overlap,
        overlap_basis=basis_overlap or f"{overlap:.0%} of the threads' peaks assumed to coincide",
        resident_bytes=resident,
        live_bytes=live,
        slack_bytes=slack,
    )


def setting_line(argv: list[str] | None, cgroup_text: str | None) -> str:
    """The exact line to set MALLOC_ARENA_MAX=2 for this process: a systemd drop-in for a
    service, otherwise the command line prefixed with the variable."""
    unit = None
    for line in (cgroup_text or "").splitlines():
        m = re.search(r"/([^/]+\.service)(?:/|$)", line.split(":", 2)[-1])
        if m:
            unit = m.group(1)
            break
    if unit:
        return f"systemctl edit {unit}  →  [Service] Environment=MALLOC_ARENA_MAX=2"
    if argv:
        return "MALLOC_ARENA_MAX=2 " + shlex.join(argv)
    return "MALLOC_ARENA_MAX=2 <the command that starts it>"


def arena_findings(heap, cap: ArenaCap, env: AllocatorEnv, prediction: SavingPrediction | None,
                   tuning: TuningState | None, threads: int | None, rss: int | None,
                   line: str | None) -> tuple[Finding, ...]:
    """Plain-words findings about the arenas (the walk must be valid)."""
    findings: list[Finding] = []
    arenas = heap.arenas
    n = len(arenas)
    arena_max = getattr(heap.tunables, "arena_max", 0) if heap.tunables is not None else 0
    cap_text = f"the cap is {cap.limit} ({cap.basis})" if cap.limit else f"the cap is unknown ({cap.basis})"
    if threads is not None:
        findings.append(Finding(Severity.INFO, f"{counted(threads, 'thread')} {'uses' if threads == 1 else 'share'} {counted(n, 'arena')}; {cap_text}."))
    if prediction is not None and n >= 1 + EXPLOSION_MIN_THREAD_ARENAS and not (arena_max and arena_max <= 2):
        enough = prediction.saving_bytes >= EXPLOSION_MIN_SAVING and (
            rss is None or prediction.saving_bytes >= EXPLOSION_MIN_SAVING_OF_RSS * rss)
        if enough:
            resident = sum(a.resident_bytes or 0 for a in arenas)
            live = sum(arena_live_bytes(a) for a in arenas)
            concentrated = ""
            if prediction.concentration_arenas <= n // 2:
                concentrated = (f" {CONCENTRATION:.0%} of the live data is in {prediction.concentration_arenas} "
                                f"of them.")
            findings.append(Finding(
                Severity.WARNING,
                f"Arena explosion: {n} arenas hold {_mib(resident)} resident for {_mib(live)} of live data."
                f"{concentrated} MALLOC_ARENA_MAX=2 would save about {_mib(prediction.saving_bytes)} of RSS "
                f"(predicted from the heap walk: {prediction.basis}).",
                f"restart it with {line}" if line else "restart it with MALLOC_ARENA_MAX=2 in its environment",
            ))
    if arena_max:
        where = env.arena_max_setting or "mallopt(M_ARENA_MAX) or an environment this process no longer shows"
        findings.append(Finding(Severity.INFO, f"The arena cap is set: mp_.arena_max = {arena_max} ({where})."))
    if tuning is not None and tuning.threshold_moved:
        findings.append(Finding(Severity.INFO, "Allocator tuning: " + tuning.notes[0] + "."))
    return tuple(findings)


# --- malloc_info beside the walk -------------------------------------------------------------------


# --- reading one process ---------------------------------------------------------------------------


def _status_fields(pid: int, root: Path) -> dict[str, str]:
    out = {}
    for line in read_text(f"{root}/{pid}/status").splitlines():
        key, sep, value = line.partition(":")
        if sep:
            out[key] = value.strip()
    return out


def analyze_arenas(pid: int, root: Path = PROC, *, walk: bool = True, census: bool = True,
                   heap=None, walks=None) -> ArenaAnalysis:
    """Read everything the Arenas tab shows for one process. Slow (heap walk, full smaps): call
    it from a worker. Raises NoSuchProcess when the process is gone before anything was read.

    ``heap`` may pass a walk already made (``memtop explain`` walks once for all its sections);
    ``walks``: the caller's memory of last valid walks (memtop.heap.LastValidWalks).
    """
    from memtop.procfs.environ import read_environ
    from memtop.procfs.process import read_stat

    root = Path(root)
    stat = read_stat(pid, root)
    try:
        status = _status_fields(pid, root)
    except ProcfsError:
        status = {}
    cpus = parse_cpu_list(status.get("Cpus_allowed_list", "")) or os.cpu_count()
    rss = None
    if status.get("VmRSS", "").endswith("kB"):
        rss = int(status["VmRSS"].split()[0]) * 1024
    try:
        env = allocator_env(read_environ(pid, root))
    except AccessDenied as e:
        env = allocator_env(None, e.reason)
    except NoSuchProcess:
        env = allocator_env(None, "the process exited")
    try:
        raw = read_bytes(f"{root}/{pid}/cmdline").rstrip(b"\0")
        argv = [a.decode("utf-8", "replace") for a in raw.split(b"\0")] if raw else None
    except ProcfsError:
        argv = None
    try:
        cgroup = read_text(f"{root}/{pid}/cgroup")
    except ProcfsError:
        cgroup = None

    heap_reason = None
    if heap is None and walk:
        heap, heap_reason = _walk(pid, root, walks)
    elif heap is None:
        heap_reason = "not walked"
    if heap is not None and not heap.valid:
        heap_reason = heap.reason or "the heap walk did not validate"

    anon = None
    census_reason = None
    if census:
        from memtop.heap.census import read_census

        try:
            anon = read_census(pid, root)
        except ProcfsError as e:
            census_reason = getattr(e, "reason", None) or str(e)

    tunables = heap.tunables if heap is not None else None
    cap = arena_cap(getattr(tunables, "arena_max", None), getattr(tunables, "arena_test", None), cpus)
    if heap is not None and heap.allocator_kind not in ("glibc", "static", "unknown"):
        # jemalloc, tcmalloc, mimalloc, musl: glibc's arena cap, tuning and MALLOC_ARENA_MAX do
        # not apply (their own findings come from memtop.heap.allocator_advice).
        cap = ArenaCap(None, cpus, f"not glibc: {heap.allocator_kind} has no glibc arena cap")
    elif tunables is None:
        # No walk: the environment is the best guess of mp_.arena_max.
        guess = _env_int(env, "glibc.malloc.arena_max") or _env_int(env, "MALLOC_ARENA_MAX")
        cap = arena_cap(guess, _env_int(env, "MALLOC_ARENA_TEST"), cpus)
        cap = ArenaCap(cap.limit, cap.cpus, cap.basis.replace("mp_.arena_max", "the environment's arena_max")
                       + " (from the environment: without the heap walk mp_ is unknown)")
    tuning = tuning_state(tunables)
    prediction = None
    findings: tuple[Finding, ...] = ()
    line = None
    if heap is not None and heap.valid:
        prediction = predict_saving(heap.arenas, heap.runtime.kind if heap.runtime is not None else None)
        line = setting_line(argv, cgroup)
        findings = arena_findings(heap, cap, env, prediction, tuning, stat.num_threads, rss, line)
        if not any(f.severity == Severity.WARNING for f in findings):
            line = None
    return ArenaAnalysis(
        pid=pid,
        start_ticks=stat.start_ticks,
        comm=stat.comm,
        threads=stat.num_threads,
        heap=heap,
        heap_reason=heap_reason,
        env=env,
        cap=cap,
        tuning=tuning,
        prediction=prediction,
        census=anon,
        census_reason=census_reason,
        setting_line=line,
        findings=findings,
    )


def _env_int(env: AllocatorEnv, name: str) -> int | None:
    value = env.get(name)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _walk(pid: int, root: Path, walks=None):
    """The heap walk of the Layers issue (memtop.heap.analyze), or the reason there is none."""
    try:
        from memtop.heap import analyze
    except ImportError:
        return None, "the heap walk is not available in this build"
    report = analyze(pid, root, walks=walks)  # never raises for a vanished or forbidden process: status says
    return report, None if report.valid else report.reason
