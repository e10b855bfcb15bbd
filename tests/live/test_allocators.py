"""The allocators that are not glibc, read-only, against their own reports as the independent
truth: a C target (tests/allocator_targets.py) allocates in a known pattern, then prints what
jemalloc (mallctl), tcmalloc (MallocExtension) or mimalloc (mi_process_info) say, and the usable
sizes of the blocks it holds; memtop's reader must give the same figures. Then the trim: the
allocator's own release, memtop's prediction against the kernel's RSS drop. And the real program:
Debian's redis-server (jemalloc), against its INFO memory.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from memtop.actions import identity_of
from memtop.actions import trim as trim_action
from memtop.heap import analyze
from tests.allocator_targets import LIBRARIES, parse_stats, stripped, target
from tests.heap_targets import parse_malloc_info
from tests.support import IS_ROOT, status_kb, wait_until

pytestmark = pytest.mark.skipif(not IS_ROOT, reason="reading another process's memory needs root")

MiB = 1 << 20


def need(kind: str) -> None:
    """The allocator is installed (scripts/setup.sh --test installs them as root): fail, not skip."""
    if kind in LIBRARIES and not LIBRARIES[kind].exists():
        pytest.fail(f"{LIBRARIES[kind]} is missing: run `make test`, which installs it as root")
    if kind.startswith("musl") and shutil.which("musl-gcc") is None:
        pytest.fail("musl-gcc is missing: run `make test`, which installs musl-tools as root")


def start(children, kind: str, scenario: str):
    need(kind)
    return children.start([target(kind), scenario])


def read(child):
    """The allocator's own figures, memtop's report, and the figures again: the target is idle,
    so both reads of the truth must agree (else the comparison would mean nothing)."""
    before = parse_stats(child.ask("stats"))
    report = analyze(child.pid)
    after = parse_stats(child.ask("stats"))
    assert before == after, f"the target changed while memtop read it: {before} vs {after}"
    return before, report


# --- the figures -------------------------------------------------------------------------------


@pytest.mark.parametrize("scenario", ["mixed", "freed"])
def test_jemalloc_figures_are_its_mallctl_stats(children, gcc, scenario):
    child = start(children, "jemalloc", scenario)
    truth, report = read(child)
    a = report.allocator
    assert report.allocator_kind == "jemalloc" and a is not None and a.status == "valid", (report.reason, a)
    assert a.version == "5.3.0"
    assert a.allocated_bytes == truth["allocated"]
    assert a.active_bytes == truth["active"]
    assert a.retained_bytes == truth["retained"]
    assert a.detail("dirty_bytes") == truth["pdirty"] and a.free_kept_bytes == truth["pdirty"] + truth["pmuzzy"]
    assert a.detail("muzzy_bytes") == truth["pmuzzy"]
    # jemalloc's stats.resident is active + dirty + its metadata, an estimate; memtop's is pagemap
    # over the extents: never more than jemalloc's, and the dirty pages never all resident.
    assert a.resident_bytes <= truth["resident"]
    assert a.release_bytes == a.detail("dirty_resident_bytes") + a.detail("muzzy_resident_bytes") <= a.free_kept_bytes
    assert "mallctl stats.allocated" in a.source_of("allocated_bytes")
    assert a.setting("background_threads_running").value == "0"


@pytest.mark.parametrize("scenario", ["mixed", "freed"])
def test_tcmalloc_figures_are_its_numeric_properties(children, gcc, scenario):
    child = start(children, "tcmalloc", scenario)
    truth, report = read(child)
    a = report.allocator
    assert report.allocator_kind == "tcmalloc" and a is not None and a.status == "valid", (report.reason, a)
    assert a.allocated_bytes == truth["allocated"]
    assert a.mapped_bytes == truth["heap"]
    assert a.free_kept_bytes == truth["pageheap_free"]
    assert a.retained_bytes == truth["pageheap_unmapped"]
    assert a.detail("central_cache_free_bytes") == truth["central"]
    assert a.detail("transfer_cache_free_bytes") == truth["transfer"]
    assert a.detail("thread_cache_free_bytes") == truth["thread"]
    assert 0 < a.release_bytes <= a.free_kept_bytes
    assert a.setting("release_rate").value == "1"


@pytest.mark.parametrize("scenario", ["mixed", "freed"])
def test_mimalloc_figures_are_its_usable_sizes_and_commit(children, gcc, scenario):
    child = start(children, "mimalloc", scenario)
    truth, report = read(child)
    a = report.allocator
    assert report.allocator_kind == "mimalloc" and a is not None and a.status == "valid", (report.reason, a)
    # A release build of mimalloc counts no allocated bytes: the truth is mi_usable_size of every
    # block the program holds (it holds nothing else: stdio has static buffers).
    assert a.allocated_bytes == truth["live"]
    assert a.detail("live_blocks") == truth["count"]
    assert a.detail("stats_committed_bytes") == truth["commit"]  # mi_process_info's current_commit
    assert a.detail("committed_bytes") <= a.mapped_bytes


@pytest.mark.parametrize("kind", ["musl", "musl-static"])
def test_musl_is_named_musl_and_its_slots_are_the_programs_blocks(children, gcc, kind):
    child = start(children, kind, "mixed")
    truth, report = read(child)
    a = report.allocator
    assert report.allocator_kind == "musl" and report.static == (kind == "musl-static")
    assert a is not None and a.status == "valid", a
    # malloc_usable_size is musl's get_nominal_size: exactly what memtop reads from the headers.
    assert a.allocated_bytes == truth["live"]
    assert a.detail("slots_in_use") == truth["count"]
    assert a.active_bytes >= a.allocated_bytes
    if kind == "musl":
        assert a.version == "1.2.3" and a.library.endswith("-linux-musl/libc.so")
    # What cannot be known is said, not guessed.
    assert a.release_bytes is None and "no malloc_trim" in a.unknown_reason("release_bytes")
    assert a.retained_bytes is None


def test_a_stripped_static_musl_binary_is_told_by_its_malloc_context(children, gcc):
    need("musl")
    child = children.start([stripped(target("musl-static")), "mixed"])
    truth, report = read(child)
    assert report.allocator_kind == "musl" and report.static
    assert report.allocator.allocated_bytes == truth["live"]


def test_static_glibc_is_walked_through_its_own_main_arena(children, gcc):
    child = children.start([target("glibc-static"), "mixed"])
    report = analyze(child.pid)
    assert report.valid and report.allocator_kind == "glibc" and report.static, report.reason
    assert report.symbols == "symtab" and "main_arena" in report.version_basis
    child.proc.stdin.write(b"info\n")
    child.proc.stdin.flush()
    lines = [child.readline()]
    while "</malloc>" not in lines[-1]:  # the rest was written with it, in one fflush: already buffered
        lines.append(child.proc.stdout.readline().decode())
        assert lines[-1], "the target closed its output"
    heaps = parse_malloc_info("\n".join(lines))
    assert len(heaps) == len(report.arenas) == 1
    arena, info = report.arenas[0], heaps[0]
    assert arena.system_bytes == info["system"]
    assert abs(arena.free_bytes + arena.top_bytes - info["rest_size"]) <= info["rest_count"]
    assert abs(arena.fastbin_bytes - info["fast_size"]) <= info["fast_count"]


def test_a_stripped_static_glibc_binary_is_refused_with_the_reason(children, gcc):
    child = children.start([stripped(target("glibc-static")), "mixed"])
    report = analyze(child.pid)
    assert report.allocator_kind == "glibc" and report.static
    assert report.status == "unsupported" and "stripped" in report.reason


# --- the trim: the allocator's own release -------------------------------------------------------


@pytest.mark.parametrize("kind, scenario", [("jemalloc", "freed"), ("tcmalloc", "freed"), ("mimalloc", "allfree")])
def test_the_allocators_own_release_drops_rss_as_predicted(children, gcc, kind, scenario, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    child = start(children, kind, scenario)
    identity = identity_of(child.pid, Path("/proc"))
    prediction = trim_action.predict(identity)
    assert prediction.refusal is None and prediction.allocator_kind == kind
    assert prediction.release_bytes is not None and prediction.release_bytes >= 8 * MiB, prediction
    result = trim_action.trim(identity, prediction=prediction)
    assert result.ok, (result.message, result.notes)
    assert child.alive() and child.ask("ping") == "pong"
    drop = result.released_bytes
    # The kernel's RSS drop against the prediction: within 3 % or 256 KiB (gdb's attach faults a
    # few pages in; the target's own stats call is not made in between).
    assert abs(drop - prediction.release_bytes) <= max(256 << 10, 0.03 * prediction.release_bytes), \
        (kind, prediction.release_bytes, drop)
    assert abs(result.heap_released_bytes - prediction.release_bytes) <= max(256 << 10, 0.03 * prediction.release_bytes)
    assert result.stopped_s is not None and result.stopped_s < 5
    assert status_kb(child.pid, "VmRSS") == result.rss_after or abs(status_kb(child.pid, "VmRSS") - result.rss_after) < 1 * MiB
    # Nothing is left for a second release, and memtop says so.
    again = analyze(child.pid).allocator
    assert again.release_bytes <= 256 << 10
    # Audit-logged, with the call that was made.
    log = (tmp_path / "memtop" / "actions.log").read_text().splitlines()
    entry = json.loads(log[-1])
    assert entry["action"] == "trim" and entry["prediction"]["call"] == prediction.call


def test_musl_and_its_missing_release_are_refused_with_the_reason(children, gcc):
    child = start(children, "musl", "freed")
    identity = identity_of(child.pid, Path("/proc"))
    result = trim_action.trim(identity, log=False)
    assert result.status == "refused" and "musl has no malloc_trim" in result.message
    assert child.alive()


# --- explain -----------------------------------------------------------------------------------


def _memtop(*args, timeout=60):
    return subprocess.run([sys.executable, "-m", "memtop", *args], capture_output=True, text=True, timeout=timeout)


def test_explain_json_gives_the_allocator_kind_and_the_glibc_fields_that_mean_the_same(children, gcc):
    child = start(children, "jemalloc", "freed")
    truth = parse_stats(child.ask("stats"))
    out = _memtop("explain", str(child.pid), "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    alloc = doc["allocator"]
    assert alloc["kind"] == "jemalloc" and alloc["valid"] and alloc["static"] is False
    assert alloc["in_use_bytes"] == alloc["allocated_bytes"] == truth["allocated"]
    assert alloc["system_bytes"] == alloc["mapped_bytes"]
    assert alloc["trim_release_bytes"] == alloc["release_bytes"] > 0
    assert alloc["release_call"] == 'mallctl("arena.4096.purge")'
    assert alloc["mmapped_bytes"] is None and alloc["arenas"] == []  # glibc's: no meaning here
    assert set(alloc["sources"]) >= {"allocated_bytes", "release_bytes"}
    assert doc["kernel"]["anon_split"]["allocator_heap"] == alloc["resident_bytes"]
    texts = " ".join(f["text"] + " " + (f["next_step"] or "") for f in doc["findings"])
    assert "jemalloc keeps" in texts and "MALLOC_ARENA_MAX" not in texts and "malloc_trim" not in texts
    assert doc["arenas"]["cap"]["limit"] is None and doc["arenas"]["findings"] == []


def test_explain_text_and_the_allocators_own_stats_through_gdb(children, gcc, tmp_path):
    child = start(children, "tcmalloc", "mixed")
    truth = parse_stats(child.ask("stats"))
    env = dict(os.environ, XDG_STATE_HOME=str(tmp_path))
    out = subprocess.run([sys.executable, "-m", "memtop", "explain", str(child.pid), "--allocator-stats", "--yes"],
                         capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "Allocator: tcmalloc 2.10" in text and "MALLOC_ARENA_MAX" not in text and "cap " not in text
    assert "tcmalloc's own report: MallocExtension_GetNumericProperty through gdb, the process stopped for" in text
    line = next(x for x in text.splitlines() if x.strip().startswith("generic.current_allocated_bytes"))
    assert "memtop read-only" in line
    log = (tmp_path / "memtop" / "actions.log").read_text().splitlines()
    entry = json.loads(log[-1])
    assert entry["action"] == "allocator-stats" and entry["result"]["status"] == "ok"
    # The stats call takes one scratch block from tcmalloc (freed after), and tcmalloc may move a
    # batch of objects between its caches for it: its own figure is the target's within 64 KiB.
    assert abs(entry["result"]["values"]["generic.current_allocated_bytes"] - truth["allocated"]) <= 64 << 10
    assert child.alive() and child.ask("ping") == "pong"


# --- the real program: Debian's redis-server, built with jemalloc --------------------------------


def _redis_cli(sock: Path, *args) -> str:
    return subprocess.run(["redis-cli", "-s", str(sock), *args], capture_output=True, text=True, timeout=30,
                          check=True).stdout


def test_redis_with_jemalloc_against_its_info_memory(children, tmp_path):
    server = shutil.which("redis-server")
    if server is None:
        pytest.fail("redis-server is missing: run `make test`, which installs it as root")
    sock = tmp_path / "redis.sock"
    child = children.start([server, "--port", "0", "--unixsocket", str(sock), "--save", "", "--appendonly", "no",
                            "--dir", str(tmp_path), "--enable-debug-command", "local"], ready=False)
    wait_until(sock.exists, timeout=15)
    _redis_cli(sock, "DEBUG", "POPULATE", "300000", "key", "200")

    def info() -> dict[str, int]:
        out = _redis_cli(sock, "INFO", "memory")
        return {k: int(v) for k, v in (line.split(":", 1) for line in out.splitlines() if ":" in line)
                if v.strip().isdigit()}

    time.sleep(0.3)  # serverCron refreshes allocator_* every 100 ms
    report = analyze(child.pid)
    after = info()
    a = report.allocator
    assert report.allocator_kind == "jemalloc" and a.status == "valid", (report.reason, a)
    # INFO's allocator_allocated/active are jemalloc's stats.allocated/active, refreshed by redis'
    # cron: the same figures, a cron apart (INFO itself allocates a little).
    assert abs(a.allocated_bytes - after["allocator_allocated"]) <= max(256 << 10, 0.01 * after["allocator_allocated"])
    assert abs(a.active_bytes - after["allocator_active"]) <= max(256 << 10, 0.01 * after["allocator_active"])
    assert a.allocated_bytes > 60 * MiB
    # redis turns jemalloc's background thread on at run time (jemalloc-bg-thread yes): seen by its name.
    assert a.setting("background_thread").value == "true"
    out = _memtop("explain", str(child.pid), "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["allocator"]["kind"] == "jemalloc"


def test_a_user_who_may_not_read_the_process_is_told_why(children, gcc):
    from tests.support import run_as_user

    child = start(children, "jemalloc", "mixed")

    def look():
        report = analyze(child.pid)
        return report.status, report.reason, report.allocator

    # /proc/PID/maps is already refused: nothing is read, nothing is guessed, the reason is said.
    status, reason, other = run_as_user(65534, look)
    assert status == "denied" and "root" in reason and other is None
