"""The kernel matrix (issue 17 item 5b): memtop in Debian's 5.10, 6.1 and 6.12 kernels.

Each kernel is booted under virtme-ng with TCG (this host's nested KVM does not boot stock
kernels), PSI on (the Debian default) and off (``psi=0``). In the guest, tests/matrix/guest_kernel.py
makes a cgroup v2 with memory.max, holds a process in it, pushes it past the limit until the OOM
killer takes it, and records memtop's snapshot beside the kernel's own files; the tests here
compare the two. The guest's result file is the judge (vng's exit status is not the command's).
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

from memtop.model.pagecache import METHOD_CACHESTAT, METHOD_MINCORE
from memtop.procfs.cachestat import NO_PAGE_CACHE, REASON_MINCORE_ONLY
from memtop.procfs.cgroup import parse_flat_keyed_file
from tests.matrix.matrix_support import REPO, RESULTS, boot, cached

KERNELS = {"bullseye": (5, 10), "bookworm": (6, 1), "trixie": (6, 12)}
LIMIT = 64 << 20
PAGE = 4096
CONFIGS = [(suite, psi) for suite in KERNELS for psi in (True, False)]


def _id(config) -> str:
    suite, psi = config
    major, minor = KERNELS[suite]
    return f"{major}.{minor}-{'psi' if psi else 'psi0'}"


# The host's live container tests run once more, on cgroup v2, in this guest only (~4 min under TCG).
CONTAINERS_CONFIG = ("trixie", True)
_BOOTED: dict = {}


def _boot(config) -> dict:
    """Boot one kernel with one PSI setting, once per run whoever asks (the result is kept)."""
    if config in _BOOTED:
        return _BOOTED[config]
    suite, psi = config
    kernel_dir = cached("fetch-kernel.sh", suite, timeout=600)
    outdir = Path(tempfile.mkdtemp(prefix="memtop-matrix-vm-", dir="/tmp"))
    try:
        more = " --containers" if config == CONTAINERS_CONFIG else ""
        command = f"{sys.executable} {REPO}/tests/matrix/guest_kernel.py {outdir}{more} > {outdir}/guest.log 2>&1"
        append = () if psi else ("psi=0",)
        timeout = 1500 if more else 900
        seconds, output = boot(kernel_dir, outdir, command, append=append, timeout=timeout)
        if not (outdir / "guest.log").exists():
            # The guest never ran the command (a TCG boot that died before userspace: CI saw it
            # once, with vng silent). That is the emulator, not memtop: boot once more, on record.
            RESULTS.append({"what": f"kernel {_id(config)} booted again", "first_seconds": round(seconds, 1),
                            "vng": output[-300:]})
            seconds, output = boot(kernel_dir, outdir, command, append=append, timeout=timeout)
        result_file = outdir / "result.json"
        log = (outdir / "guest.log").read_text(errors="replace")[-3000:] if (outdir / "guest.log").exists() else ""
        if not result_file.exists():
            pytest.fail(f"the {_id(config)} guest wrote no result (boot failure?)\nvng: {output[-3000:]}\nguest: {log}")
        result = json.loads(result_file.read_text())
        if not result.get("done"):
            pytest.fail(f"the {_id(config)} guest stopped early\nresult: {json.dumps(result)[-3000:]}\nguest: {log}\nvng: {output[-2000:]}")
        result["boot_seconds"] = round(seconds, 1)
        result["config"] = _id(config)
        result["psi_on"] = psi
        result["expected_version"] = KERNELS[suite]
        record = {"what": f"kernel {_id(config)}", "release": result["steps"]["info"]["release"],
                  "seconds": result["boot_seconds"], "guest_step_seconds": result.get("seconds")}
        RESULTS.append(record)
        result["record"] = record
        _BOOTED[config] = result
        return result
    finally:
        shutil.rmtree(outdir, ignore_errors=True)


@pytest.fixture(scope="session", params=CONFIGS, ids=_id)
def guest(request):
    return _boot(request.param)


def _step(guest, name):
    assert not guest["errors"], "\n".join(e["traceback"] for e in guest["errors"])
    step = guest["steps"][name]
    assert step is not None, f"step {name} did not run"
    return step


def _bytes(text: str) -> int | None:
    return None if text.strip() == "max" else int(text)


def _in_range(value, before, after):
    return min(before, after) <= value <= max(before, after)


def test_the_kernel_is_the_one_asked_for(guest):
    info = _step(guest, "info")
    major, minor = guest["expected_version"]
    assert info["release"].startswith(f"{major}.{minor}."), info["release"]
    assert ("psi=0" in info["cmdline"]) != guest["psi_on"]


def test_process_cgroup_figures_equal_the_kernel_files(guest):
    cg = _step(guest, "cgroup")
    before, after = cg["kernel_before"], cg["kernel_after"]
    # GIVEN a process in a cgroup v2 limited by memory.max, holding anonymous memory
    assert cg["proc_cgroup"] == "0::/memtop-matrix\n"
    assert cg["memtop_hierarchy"] == {"version": 2, "mount": cg["mount"], "unknown_reason": None}
    mine = cg["memtop_process_cgroup"]
    assert mine is not None, "memtop's snapshot has no row for the process"
    # THEN memtop's per-process cgroup object equals memory.current/max/events/stat
    assert mine["path"] == "/memtop-matrix"
    assert mine["max_bytes"] == _bytes(before["memory.max"]) == LIMIT
    assert _in_range(mine["current_bytes"], int(before["memory.current"]), int(after["memory.current"])), (mine, before, after)
    assert mine["events"] == parse_flat_keyed_file(before["memory.events"]) == parse_flat_keyed_file(after["memory.events"])
    stat_before, stat_after = parse_flat_keyed_file(before["memory.stat"]), parse_flat_keyed_file(after["memory.stat"])
    assert mine["stat_bytes"], "no memory.stat breakdown"
    for key, value in mine["stat_bytes"].items():
        assert _in_range(value, stat_before[key], stat_after[key]), (key, value, stat_before[key], stat_after[key])
    assert mine["stat_bytes"]["anon"] >= 20 << 20  # the 24 MiB the process holds
    # and the cgroup tree of the pressure section says the same
    tree = cg["memtop_tree_entry"]
    assert tree is not None, "the cgroup is missing from memtop's tree"
    assert tree["max_bytes"] == LIMIT and tree["events"] == mine["events"]
    assert _in_range(tree["current_bytes"], int(before["memory.current"]), int(after["memory.current"]))
    guest["record"]["cgroup"] = {"memory.current": int(before["memory.current"]), "memtop": mine["current_bytes"],
                                 "anon": mine["stat_bytes"]["anon"]}


def test_oom_kill_at_memory_max_is_in_memtop_events(guest):
    oom = _step(guest, "oom")
    # GIVEN the process pushed past memory.max until the kernel killed it (SIGKILL)
    assert oom["exit"] == -9, oom["exit"]
    events_before = parse_flat_keyed_file(oom["kernel_before"]["memory.events"])
    events_after = parse_flat_keyed_file(oom["kernel_after"]["memory.events"])
    assert events_before["oom_kill"] >= 1 and events_before["max"] >= 1, events_before
    # THEN memtop's tree entry and the per-process object (a process placed in the cgroup after
    # the kill) show the kernel's events
    assert oom["memtop_tree_entry"]["events"] == events_before == events_after
    mine = oom["memtop_process_cgroup"]
    assert mine is not None and mine["path"] == "/memtop-matrix"
    assert mine["events"] == events_before
    assert _in_range(mine["current_bytes"], int(oom["kernel_before"]["memory.current"]),
                     int(oom["kernel_after"]["memory.current"]))
    guest["record"]["oom"] = {"oom_kill": events_before["oom_kill"], "max_events": events_before["max"]}


def _total(psi_text: str, kind: str = "some") -> int:
    for line in psi_text.splitlines():
        if line.startswith(kind + " "):
            return int(line.rsplit("total=", 1)[1])
    raise AssertionError(f"no {kind} line in {psi_text!r}")


def test_pressure_with_psi_on_and_off(guest):
    info = _step(guest, "info")
    oom = _step(guest, "oom")
    mine = oom["memtop_process_cgroup"]
    system = oom["memtop_pressure"]
    if guest["psi_on"]:
        # PSI on: memtop's totals lie between two reads of the kernel's files around the snapshot
        assert info["proc_pressure_exists"]
        assert system["unavailable_reason"] is None and system["memory"] is not None
        for kind in ("some", "full"):
            assert _in_range(system["memory"][kind]["total_us"], _total(oom["proc_pressure_before"], kind),
                             _total(oom["proc_pressure_after"], kind))
            assert _in_range(mine["pressure"][kind]["total_us"], _total(oom["kernel_before"]["memory.pressure"], kind),
                             _total(oom["kernel_after"]["memory.pressure"], kind))
        guest["record"]["psi"] = {"system_some_us": system["memory"]["some"]["total_us"],
                                  "cgroup_some_us": mine["pressure"]["some"]["total_us"]}
    else:
        # psi=0: no figure is shown, and the reason names psi=0
        assert not info["proc_pressure_exists"]
        assert system["memory"] is None
        assert "psi=0" in system["unavailable_reason"]
        assert mine["pressure"] is None
        assert mine["unknown_reasons"].get("pressure"), mine["unknown_reasons"]
        guest["record"]["psi"] = {"system": system["unavailable_reason"][:60],
                                  "cgroup": mine["unknown_reasons"]["pressure"][:80]}


def test_page_cache_fallback_and_overlay_equal_fincore(guest):
    info = _step(guest, "info")
    pc = _step(guest, "pagecache")
    has_cachestat = tuple(guest["expected_version"]) >= (6, 5)
    # cachestat(2) exists from 6.5 on; before, memtop says it falls back to mincore(2)
    assert info["cachestat_supported"] == has_cachestat
    methods = {}
    for f in pc["files"]:
        # THEN memtop's cached bytes equal fincore's on the real file (within a page) and do not move
        assert f["memtop"][0] == f["memtop"][1], f
        assert f["fincore"] is not None and abs(f["memtop"][1] - f["fincore"]) <= PAGE, f
        assert f["memtop"][1] > 0, f
        overlay = f["path"] != f["real"]
        if not has_cachestat:
            assert f["method"] == METHOD_MINCORE and f["reason"] == REASON_MINCORE_ONLY, f
        elif overlay:
            assert f["method"] == METHOD_MINCORE and "overlayfs" in f["reason"], f
        elif f["method"] == METHOD_MINCORE:
            # memtop's interpreter, shared from the host: under /usr it sits on the guest's
            # overlay of the host root (virtme-ng), where cachestat(2) sees no pages; memtop says so
            # and counts by mincore(2), equal to fincore above.
            assert "cachestat(2) sees only the stacked inode" in (f["reason"] or ""), f
        else:
            assert f["method"] == METHOD_CACHESTAT, f
        methods[Path(f["path"]).name] = f["method"]
    assert len(pc["files"]) == 4
    # a procfs file has no page cache: unknown with the reason, never "0 cached"
    assert pc["proc_file"]["cached"] is None and pc["proc_file"]["reason"].endswith(NO_PAGE_CACHE)
    guest["record"]["pagecache"] = methods


def test_live_container_tests_pass_on_cgroup_v2():
    """tests/live/test_containers_live.py, test_snapshot_containers.py and the Containers tab's
    tests, run by pytest inside the 6.12 guest where the memory controller is on cgroup v2 (on this
    host it is on v1): every one passes but the one that needs v1."""
    guest = _boot(CONTAINERS_CONFIG)
    step = _step(guest, "containers")
    assert step["cgroup_v2_only_memory"], "the guest's memory controller is not on cgroup v2"
    cases = step["cases"]
    assert cases, f"no test ran in the guest: {step['tail']}"
    bad = [c for c in cases if c["outcome"] in ("failure", "error")]
    assert not bad and step["returncode"] == 0, f"{bad}\n{step['tail']}"
    skipped = [c for c in cases if c["outcome"] == "skipped"]
    assert all("v2 here" in c["message"] for c in skipped), skipped
    assert len(cases) - len(skipped) >= 8, cases
