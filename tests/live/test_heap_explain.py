"""`memtop explain PID [--json]` run as a user runs it, on targets built here."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.heap_targets import HEAP_TARGET
from tests.support import IS_ROOT, compile_c, status_kb

pytestmark = pytest.mark.live


def memtop(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "memtop", *args], capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(not IS_ROOT, reason="reading another process's heap needs root (or CAP_SYS_PTRACE)")
def test_explain_json_has_every_documented_key(children):
    child = children.start([compile_c(HEAP_TARGET, name="heap_target"), "pinned"])
    out = memtop("explain", str(child.pid), "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    kernel, allocator = doc["kernel"], doc["allocator"]
    assert kernel["rss_bytes"] == status_kb(child.pid, "VmRSS")  # the target is idle
    for key in ("pss_bytes", "private_dirty_bytes", "lazyfree_bytes"):
        assert isinstance(kernel[key], int)
    assert allocator["kind"] == "glibc" and allocator["glibc_version"] == "2.36" and allocator["valid"] is True
    arena = allocator["arenas"][0]
    assert set(arena) >= {"address", "system_bytes", "in_use_bytes", "free_bytes", "top_bytes", "heaps"}
    assert arena["free_bytes"] > 10 << 20
    assert isinstance(allocator["mmapped_bytes"], int)
    assert allocator["trim_release_bytes"] > 10 << 20
    assert set(allocator["pin"]) >= {"address", "size", "pinned_bytes"} and allocator["pin"]["size"] == 208
    assert doc["runtime"]["kind"] == "none"
    assert doc["findings"] and all(set(f) >= {"severity", "text"} for f in doc["findings"])
    assert any("pins the brk heap" in f["text"] for f in doc["findings"])

    text = memtop("explain", str(child.pid))
    assert text.returncode == 0
    assert "malloc_trim(0) would release" in text.stdout and "pin:" in text.stdout


def test_explain_a_kernel_thread_says_there_is_no_heap():
    out = memtop("explain", "2", "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["allocator"]["valid"] is False
    assert doc["allocator"]["status"] == "kernel-thread"
    assert doc["allocator"]["trim_release_bytes"] is None and doc["allocator"]["pin"] is None
    # No user address space: RSS is 0, as the Processes tab and the snapshot say (not unknown).
    assert doc["kernel"]["rss_bytes"] == 0 and doc["kernel"]["anon_bytes"] == 0
    text = memtop("explain", "2")
    assert text.returncode == 0 and "RSS " in text.stdout
    rss_line = next(line for line in text.stdout.splitlines() if line.strip().startswith("RSS"))
    assert rss_line.split()[1:3] == ["0", "B"]


def test_explain_bad_input():
    gone = memtop("explain", "99999999")
    assert gone.returncode == 1 and "no process with PID 99999999" in gone.stderr
    usage = memtop("explain", "abc")
    assert usage.returncode == 2 and "not a PID: 'abc' is not an integer" in usage.stderr
    for bad in ("0", "-5"):  # invalid arguments are usage errors: exit 2 with the usage line
        out = memtop("explain", bad)
        assert out.returncode == 2, (bad, out.stderr)
        assert out.stderr.startswith("usage: memtop explain") and f"not a PID: {bad} (PIDs are positive integers)" in out.stderr
    assert "Traceback" not in gone.stderr + usage.stderr


def test_a_pin_that_holds_nothing_is_not_shown():
    """The busy chunk nearest the heap's end is the pin; with no free memory right below it, it
    holds nothing back, and a `pin:` line saying `0 B free right below it` was noise (a plain
    `sleep` showed one). The JSON keeps the pin with its 0."""
    child = subprocess.Popen(["sleep", "600"])
    try:
        doc = json.loads(memtop("explain", str(child.pid), "--json").stdout)
        assert doc["allocator"]["pin"]["pinned_bytes"] == 0
        text = memtop("explain", str(child.pid))
        assert text.returncode == 0 and "pin:" not in text.stdout, text.stdout
    finally:
        child.kill()
        child.wait()
