"""The Go runtime's heap read from the binary's symbols and /proc/PID/mem, held against
runtime.ReadMemStats printed by the test's own Go program (Debian 12's Go 1.19).

GIVEN a Go program built during the run that holds 64 MiB in 1 MiB slices and 200k small ones,
WHEN memtop reads runtime.gcController and runtime.debug in place (no stop, no signal),
THEN HeapInuse, HeapIdle, HeapReleased and HeapSys equal ReadMemStats within a few percent,
and GOGC, GOMEMLIMIT and the madvise mode are the ones the program was started with.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest

from memtop.collect.layers import explain
from memtop.output.layers import report_json
from tests.support import IS_ROOT

pytestmark = [pytest.mark.live,
              pytest.mark.skipif(not IS_ROOT, reason="reading another process's memory needs root (or CAP_SYS_PTRACE)")]

PROGRAM = """package main

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
)

var keep [][]byte

func main() {
	for i := 0; i < 64; i++ {
		b := make([]byte, 1<<20)
		for j := range b {
			b[j] = 1
		}
		keep = append(keep, b)
	}
	for i := 0; i < 200000; i++ {
		keep = append(keep, make([]byte, 64))
	}
	runtime.GC()
	fmt.Println("READY")
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		fmt.Println(m.HeapInuse, m.HeapIdle, m.HeapReleased, m.HeapSys, m.HeapAlloc)
	}
}
"""
MiB = 1 << 20


@pytest.fixture(scope="module")
def go_binaries(tmp_path_factory):
    go = shutil.which("go")
    if go is None:
        pytest.fail("go is missing: `make test` installs golang-go (Debian 12: Go 1.19) as root")
    src = tmp_path_factory.mktemp("gosrc")
    (src / "main.go").write_text(PROGRAM)
    (src / "go.mod").write_text("module memtoptest\n\ngo 1.19\n")
    env = {**os.environ, "GOFLAGS": "-mod=mod", "GO111MODULE": "on"}
    out = {}
    for name, flags in (("plain", []), ("stripped", ["-ldflags=-s -w"])):
        subprocess.run([go, "build", *flags, "-o", str(src / name), "."], cwd=src, env=env, check=True,
                       capture_output=True, timeout=300)
        out[name] = src / name
    return out


def _memstats(child) -> dict[str, int]:
    names = ("HeapInuse", "HeapIdle", "HeapReleased", "HeapSys", "HeapAlloc")
    return dict(zip(names, (int(v) for v in child.ask("stats").split())))


def _close(a, b, rel=0.03):
    return abs(a - b) <= rel * max(a, b)


def test_go_heap_matches_readmemstats(go_binaries, children):
    child = children.start([go_binaries["plain"]], env={k: v for k, v in os.environ.items()
                                                        if k not in ("GOGC", "GOMEMLIMIT", "GODEBUG")})
    # Go's background scavenger returns idle pages for a while after the GC: read memtop's
    # figures between two ReadMemStats that agree (the heap held still while memtop read it).
    deadline = time.monotonic() + 60
    while True:
        before = _memstats(child)
        report = explain(child.pid)
        truth = _memstats(child)
        # (HeapAlloc moves by the program's own reply to each "stats")
        still = all(truth[k] == before[k] for k in ("HeapInuse", "HeapIdle", "HeapReleased", "HeapSys"))
        if still or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert still, f"the Go heap kept changing for a minute: {before} then {truth}"
    rr = report.runtime_report
    assert rr is not None and rr.kind == "go" and rr.status == "ok", rr and rr.reason
    assert rr.version.startswith("go1.19")
    v = rr.value
    assert _close(v("heap_inuse"), truth["HeapInuse"])
    assert _close(v("heap_idle"), truth["HeapIdle"], 0.05) or abs(v("heap_idle") - truth["HeapIdle"]) <= MiB
    assert _close(v("heap_released"), truth["HeapReleased"], 0.05) or abs(v("heap_released") - truth["HeapReleased"]) <= MiB
    assert _close(v("heap_sys"), truth["HeapSys"])
    assert _close(v("heap_objects"), truth["HeapAlloc"]) and truth["HeapAlloc"] >= 64 * MiB
    assert v("gogc") == 100 and v("gomemlimit") is None and v("madvise") == "MADV_DONTNEED"
    # The 64 MiB the program wrote are resident in Go's arenas: the Layers' runtime row.
    assert v("heap_arenas_resident") >= 64 * MiB
    layers = {layer.key: layer.bytes for layer in report.anon_split}
    assert layers["runtime"] >= 64 * MiB
    doc = report_json(report)["runtime"]["report"]
    assert doc["figures"]["heap_inuse"]["source"] == "runtime.gcController.heapInUse"


def test_go_settings_are_read_from_the_runtime(go_binaries, children):
    env = {**os.environ, "GOGC": "50", "GOMEMLIMIT": "300MiB", "GODEBUG": "madvdontneed=0"}
    child = children.start([go_binaries["plain"]], env=env)
    rr = explain(child.pid).runtime_report
    assert rr.value("gogc") == 50 and rr.value("gomemlimit") == 300 * MiB and rr.value("madvise") == "MADV_FREE"
    assert any("MADV_FREE" in f.text for f in rr.findings)


def test_a_stripped_go_binary_says_why(go_binaries, children):
    child = children.start([go_binaries["stripped"]])
    report = explain(child.pid)
    rr = report.runtime_report
    assert rr.kind == "go" and rr.status == "unavailable" and "stripped" in rr.reason
    assert rr.regions  # its arenas are still named from the maps


def test_section_names_are_read_from_the_headers_alone(go_binaries, tmp_path):
    """detect.py's Go check reads the section table, not the whole executable (a 30 MiB one cost
    30 MiB of memtop's RSS per look): the same names as the whole-file parser, on Go binaries and
    on the Python running this test; a file cut short is an error, not a guess."""
    from memtop.heap.elf import ElfError, ElfFile, section_names

    for path in (go_binaries["plain"], go_binaries["stripped"], os.path.realpath("/proc/self/exe")):
        data = open(path, "rb").read()
        with open(path, "rb") as f:
            names = section_names(f)
        assert names == {s.name for s in ElfFile(data).sections}
        assert (".note.go.buildid" in names) == (path in go_binaries.values())
    data = go_binaries["plain"].read_bytes()
    cut = tmp_path / "cut"
    shoff = int.from_bytes(data[0x28:0x30], "little")
    cut.write_bytes(data[:shoff + 100])  # the file ends inside its section header table
    with open(cut, "rb") as f, pytest.raises(ElfError):
        section_names(f)
