"""CPython's obmalloc arenas read from outside, held against ``sys._debugmallocstats()`` printed
by the target itself: this machine's Python (Debian 12's python3.11) and a newer one (3.12+).

GIVEN a Python child that makes 700k small objects, frees most of them but keeps one in 2000
(so that arenas stay pinned by a few live blocks),
WHEN memtop scans its memory for obmalloc pool headers (read-only, /proc/PID/mem),
THEN arenas, bytes in allocated blocks, bytes in available blocks and unused pools + alignment
equal the child's own _debugmallocstats within 1 %, and the pinned arenas are named.
"""

from __future__ import annotations

import glob
import os
import re
import shutil

import pytest

from memtop.collect.layers import explain
from memtop.output.layers import report_json
from tests.support import IS_ROOT

pytestmark = [pytest.mark.live,
              pytest.mark.skipif(not IS_ROOT, reason="reading another process's memory needs root (or CAP_SYS_PTRACE)")]

CHILD = r"""
import os, sys, tempfile
keep = [str(i) * 3 for i in range(300000)]
junk = [(i, i + 1) for i in range(400000)]
pins = junk[::2000]
del junk
print("READY", flush=True)
for line in sys.stdin:
    fd, path = tempfile.mkstemp(prefix="memtop-mallocstats-")
    saved = os.dup(2)
    os.dup2(fd, 2)
    sys._debugmallocstats()
    os.dup2(saved, 2)
    os.close(saved)
    os.close(fd)
    print(path, flush=True)
"""


def _debian_python() -> str:
    path = "/usr/bin/python3.11"
    if not os.path.exists(path):
        pytest.fail("/usr/bin/python3.11 (Debian 12's python3) is missing: `make test` runs on Debian 12")
    return path


def _newer_python() -> str:
    for name in ("python3.13", "python3.12"):
        found = shutil.which(name)
        if found and "/shims/" not in found:
            return found
    for path in sorted(glob.glob("/root/.pyenv/versions/3.1[2-9]*/bin/python3.1[2-9]"), reverse=True):
        if os.access(path, os.X_OK):
            return path
    pytest.fail("no CPython 3.12+ found (pyenv's /root/.pyenv/versions/3.12.x or 3.13.x, or python3.12/3.13 on PATH)")


def _stats(child) -> dict[str, int]:
    path = child.ask("stats")
    try:
        text = open(path).read()
    finally:
        os.unlink(path)
    out = {}
    for key, pattern in (("arenas", r"# arenas allocated current\s*=\s*([\d,]+)"),
                         ("allocated", r"# bytes in allocated blocks\s*=\s*([\d,]+)"),
                         ("available", r"# bytes in available blocks\s*=\s*([\d,]+)"),
                         ("unused", r"\d+ unused pools \* \d+ bytes\s*=\s*([\d,]+)"),
                         ("alignment", r"# bytes lost to arena alignment\s*=\s*([\d,]+)"),
                         ("headers", r"# bytes lost to pool headers\s*=\s*([\d,]+)"),
                         ("quantization", r"# bytes lost to quantization\s*=\s*([\d,]+)")):
        m = re.search(pattern, text)
        assert m, f"{key} not in _debugmallocstats output:\n{text[-2000:]}"
        out[key] = int(m[1].replace(",", ""))
    return out


def _close(a, b, rel=0.01):
    return abs(a - b) <= rel * max(a, b)


@pytest.mark.parametrize("which", ["debian-3.11", "newer"])
def test_obmalloc_figures_match_debugmallocstats(which, children, tmp_path):
    python = _debian_python() if which == "debian-3.11" else _newer_python()
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    child = children.start([python, str(script)])
    report = explain(child.pid)
    truth = _stats(child)
    rr = report.runtime_report
    assert rr is not None and rr.kind == "cpython" and rr.status == "ok", (python, rr and rr.reason)
    v = rr.value
    assert v("arenas") == truth["arenas"] >= 40
    assert v("arena_bytes") == truth["arenas"] << 20
    assert _close(v("allocated_bytes"), truth["allocated"])
    assert _close(v("available_bytes"), truth["available"], 0.02)
    assert _close(v("free_pools_bytes"), truth["unused"] + truth["alignment"])
    assert _close(v("overhead_bytes"), truth["headers"] + truth["quantization"], 0.05)
    # 400k tuples freed with one kept in 2000: the arenas they filled stay, nearly empty.
    assert v("pinned_arenas") >= 20 and v("pinned_free_bytes") >= 20 << 20
    assert any("pin" in f.text and "arenas" in f.text for f in report.findings)
    # Layers: the arenas' resident pages are the runtime row, out of "other anonymous".
    split = {layer.key: layer.bytes for layer in report.runtime_split}
    assert abs(split["obmalloc_arenas"] - v("arena_resident")) <= 64 << 10
    layers = {layer.key: layer.bytes for layer in report.anon_split}
    assert layers["runtime"] == split["obmalloc_arenas"] and layers["other"] < v("arena_resident")
    doc = report_json(report)["runtime"]["report"]
    assert doc["figures"]["allocated_bytes"]["value"] == v("allocated_bytes") and len(doc["regions"]) == v("arenas")


def test_pythonmalloc_malloc_has_no_arenas_and_says_why(children, tmp_path):
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    child = children.start([_debian_python(), str(script)], env={**os.environ, "PYTHONMALLOC": "malloc"})
    rr = explain(child.pid).runtime_report
    assert rr.status == "unavailable" and "PYTHONMALLOC=malloc" in rr.reason and "glibc" in rr.reason


def test_pythonmalloc_not_set_is_said_once_with_where_it_was_read(children, tmp_path):
    """`explain` printed `PYTHONMALLOC  not set  not set`: the value, then the same words where
    the source belongs. Not set is a fact read from the environment, not an unknown."""
    from memtop.output.runtime import runtime_lines

    script = tmp_path / "child.py"
    script.write_text(CHILD)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONMALLOC"}
    child = children.start([_debian_python(), str(script)], env=env)
    rr = explain(child.pid).runtime_report
    (line,) = [line for line in runtime_lines(rr) if "PYTHONMALLOC" in line]
    assert line.split()[1:] == ["not", "set", "/proc/PID/environ", "(at", "exec)"], line
