"""`memtop snapshot --json --pid PID` with the arenas object: as root on the real target, and as
an unprivileged user on a root process (every field unknown, with its reason; never a traceback)
and on its own process (the smaps census works without root)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import IS_ROOT, compile_c

pytestmark = [pytest.mark.live]

WORKTREE = Path(__file__).resolve().parents[2]
SOURCE = (Path(__file__).resolve().parent / "arenas_target.c").read_text()
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


@pytest.fixture(scope="module")
def target_binary():
    if shutil.which("gcc") is None:
        pytest.fail("gcc is missing: run `make test`, which installs it as root")
    return compile_c(SOURCE, name="arenas16")


def _snapshot(pid: int, prefix: list[str] = ()) -> tuple[dict, subprocess.CompletedProcess]:
    proc = subprocess.run([*prefix, sys.executable, "-m", "memtop", "snapshot", "--json", "--pid", str(pid)],
                          cwd=WORKTREE, capture_output=True, text=True, timeout=60)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert [p["pid"] for p in doc["processes"]] == [pid]
    return doc["processes"][0]["arenas"], proc


@pytest.mark.skipif(not IS_ROOT, reason="the heap walk of another process needs root (or CAP_SYS_PTRACE)")
def test_snapshot_json_pid_has_the_arenas(children, target_binary):
    child = children.start([target_binary, "4", "8192"])
    arenas, _ = _snapshot(child.pid)
    assert arenas["walk"]["valid"] is True and arenas["walk"]["glibc_version"]
    assert arenas["arena_count"] == 5 == len(arenas["arenas"])
    main, *threads = arenas["arenas"]
    assert main["is_main"] and not any(a["is_main"] for a in threads)
    for a in arenas["arenas"]:
        assert a["system_bytes"] == a["in_use_bytes"] + a["free_bytes"] + a["fastbin_bytes"] + a["top_bytes"]
        assert 0 < a["resident_bytes"] <= a["system_bytes"]
        assert sum(h["total_bytes"] for h in a["free_size_histogram"]) == a["free_bytes"] + a["fastbin_bytes"]
    assert arenas["threads"] == 5 and arenas["cap"]["limit"] >= 9
    assert arenas["environment"]["readable"] is True and arenas["environment"]["MALLOC_ARENA_MAX"] is None
    # each burst's array of 16384 pointers (128 KiB) was mmapped, then freed: the dynamic mmap
    # threshold moved to that chunk's size (malloc.c __libc_free)
    assert arenas["tuning"]["mmap_threshold_bytes"] == 128 * 1024 + 4096 and arenas["tuning"]["threshold_moved"] is True
    assert arenas["census"]["arena_heaps"]["count"] == 4 and arenas["census"]["allocator"] == "glibc"
    # 4 thread arenas holding ~8 MiB each for ~0.25 MiB of live data (bursts of 8 MiB in turns):
    # the estimate, which assumes half the threads' peaks coincide, is still well over 8 MiB
    prediction = arenas["prediction"]
    assert prediction["thread_arenas"] == 4 and prediction["saving_bytes"] > 8 << 20
    assert prediction["saving_if_threads_peak_together_bytes"] < prediction["saving_bytes"] \
        < prediction["saving_if_threads_take_turns_bytes"]
    warnings = [f for f in arenas["findings"] if f["severity"] == "warning"]
    assert len(warnings) == 1 and warnings[0]["text"].startswith("Arena explosion: 5 arenas")
    assert arenas["setting_line"] == f"MALLOC_ARENA_MAX=2 {target_binary} 4 8192"


@pytest.mark.skipif(not IS_ROOT, reason="starts processes as another user (needs root)")
def test_unprivileged_user_on_a_root_process_gets_reasons(children, target_binary):
    child = children.start([target_binary, "2"])  # runs as root
    arenas, _ = _snapshot(child.pid, NOBODY)
    assert arenas["walk"]["valid"] is False and "root" in arenas["walk"]["reason"]
    assert arenas["arena_count"] is None and arenas["arenas"] == []
    assert arenas["environment"]["readable"] is False and arenas["environment"]["reason"]
    assert arenas["census"] is None and arenas["census_reason"]
    assert arenas["prediction"] is None and arenas["tuning"] is None


@pytest.mark.skipif(not IS_ROOT, reason="starts processes as another user (needs root)")
def test_unprivileged_user_on_its_own_process_gets_the_census(children, target_binary, tmp_path):
    binary = tmp_path / "target"
    shutil.copy(target_binary, binary)
    os.chmod(tmp_path, 0o755)
    child = children.start([*NOBODY, binary, "3"])
    arenas, _ = _snapshot(child.pid, NOBODY)
    census = arenas["census"]
    assert census is not None and census["arena_heaps"]["count"] == 3
    assert census["thread_stacks"]["count"] == 3
    assert arenas["environment"]["readable"] is True


@pytest.mark.skipif(not IS_ROOT, reason="the heap walk of another process needs root (or CAP_SYS_PTRACE)")
def test_explain_gains_the_arena_fields_and_finding(children, target_binary):
    child = children.start([target_binary, "4", "8192"])
    run = lambda *extra: subprocess.run([sys.executable, "-m", "memtop", "explain", str(child.pid), *extra],  # noqa: E731
                                        cwd=WORKTREE, capture_output=True, text=True, timeout=60)
    proc = run("--json")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["arenas"]["arena_count"] == 5 and doc["arenas"]["cap"]["limit"] >= 9
    for index, entry in enumerate(doc["allocator"]["arenas"]):
        assert entry["index"] == index and 0 < entry["utilization"] < 1
        assert sum(h["total_bytes"] for h in entry["free_size_histogram"]) == entry["free_bytes"] + entry["fastbin_bytes"]
    texts = [f["text"] for f in doc["findings"]]
    assert sum(t.startswith("Arena explosion: 5 arenas") for t in texts) == 1
    assert not any("(arena fragmentation)" in t for t in texts)  # the coarser finding is replaced
    text = run()
    assert text.returncode == 0, text.stderr
    assert "Arenas (threads, cap" in text.stdout and "5 threads, 5 arenas" in text.stdout
    assert f"set: MALLOC_ARENA_MAX=2 {target_binary} 4 8192" in text.stdout
    assert "[warning] Arena explosion: 5 arenas" in text.stdout
