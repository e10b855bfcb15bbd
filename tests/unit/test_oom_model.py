"""OOM: the kernel's report parsed from captured /dev/kmsg records, oom_badness and the kill
order, the least-squares time to the limit, and the OomWatch's event logic.

tests/fixtures/containers/kmsg-oom.json holds the records of a real OOM kill on this machine
(capture.py: a 96 MiB v1 cgroup ``memtop-test``, the victim in its child ``app``);
v1/ and v1-after/ the cgroups' files before and after it.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType

import pytest

from memtop.model.oom import (
    CgroupCounters,
    KernelOomReport,
    OomCandidate,
    OomTick,
    OomWatch,
    ProcessBrief,
    badness_pages,
    kill_order,
    least_squares,
    oom_score_from_badness,
    rank_kernel_tasks,
    time_to_exhaustion,
    time_to_limit,
)
from memtop.procfs.oom import (
    OomReportParser,
    parse_kmsg_record,
    parse_killed_line,
    parse_oom_status,
    parse_oom_summary,
)

FIX = Path(__file__).resolve().parent.parent / "fixtures" / "containers"
PAGE = 4096
MiB = 1 << 20


def captured_report() -> KernelOomReport:
    parser = OomReportParser()
    reports = []
    for raw in json.loads((FIX / "kmsg-oom.json").read_text()):
        record = parse_kmsg_record(raw.encode("latin-1"))
        assert record is not None
        found = parser.feed(record)
        if found is not None:
            reports.append(found)
    assert len(reports) == 1
    return reports[0]


def test_the_captured_kernel_report():
    report = captured_report()
    victim = int((FIX / "kmsg-oom.victim").read_text())
    assert report.pid == victim and report.comm == "python"
    assert report.constraint == "CONSTRAINT_MEMCG" and report.scope == "cgroup"
    # The limit hit was the parent's; the victim was in the child.
    assert report.oom_memcg == "/memtop-test" and report.task_memcg == "/memtop-test/app"
    assert report.anon_rss == 54528 * 1024 and report.file_rss == 6104 * 1024 and report.shmem_rss == 0
    assert report.pgtables == 160 * 1024 and report.oom_score_adj == 0 and report.uid == 0
    assert report.text.startswith("Memory cgroup out of memory: Killed process")
    # The "Tasks state" table: the three processes of the cgroup at the moment of the kill.
    assert [row[0] for row in report.tasks] == sorted(row[0] for row in report.tasks) and len(report.tasks) == 3
    assert victim in [row[0] for row in report.tasks]
    # oom_badness() on the kernel's own figures (limit 96 MiB, no swap) ranks the victim first.
    ranked = rank_kernel_tasks(report, (96 * MiB) // PAGE, PAGE)
    assert ranked[0][1] == victim
    row = next(r for r in report.tasks if r[0] == victim)
    assert ranked[0][0] == row[4] + row[6] + row[5] // PAGE  # rss + swapents + page-table pages


def test_killed_and_summary_lines_of_a_system_oom_and_hostile_names():
    # mm/oom_kill.c's formats: a global OOM prints "Out of memory:" and ",global_oom".
    killed = parse_killed_line("Out of memory: Killed process 4321 (a) b) total-vm:1000kB, anon-rss:800kB, "
                               "file-rss:4kB, shmem-rss:0kB, UID:1000 pgtables:12kB oom_score_adj:-500")
    assert killed["pid"] == 4321 and killed["comm"] == "a) b" and killed["oom_score_adj"] == -500
    assert killed["anon_rss"] == 800 * 1024 and killed["uid"] == 1000
    summary = parse_oom_summary("oom-kill:constraint=CONSTRAINT_NONE,nodemask=(null),cpuset=/,mems_allowed=0,"
                                "global_oom,task_memcg=/user.slice/user-1000.slice/session-2.scope,task=a) b,pid=4321,uid=1000")
    assert summary["constraint"] == "CONSTRAINT_NONE" and summary["oom_memcg"] is None
    assert summary["task_memcg"] == "/user.slice/user-1000.slice/session-2.scope" and summary["pid"] == 4321
    # Linux 4.19 printed no UID, pgtables or oom_score_adj: still parsed, those unknown.
    old = parse_killed_line("Memory cgroup out of memory: Killed process 77 (x) total-vm:10kB, anon-rss:5kB, "
                            "file-rss:1kB, shmem-rss:0kB")
    assert old["pid"] == 77 and old["anon_rss"] == 5 * 1024 and old["uid"] is None and old["oom_score_adj"] is None
    assert parse_killed_line("Killed process 77 (x) total-vm:10kB") is None  # not the kernel's format
    assert parse_kmsg_record(b"garbage") is None
    assert parse_kmsg_record(b"6,12,34,-;text\n SUBSYSTEM=x\n").text == "text"


def test_status_fields_for_badness():
    status = b"Name:\tx\nVmRSS:\t  1024 kB\nVmPTE:\t    48 kB\nVmSwap:\t       0 kB\nThreads:\t1\n"
    assert parse_oom_status(status) == {"VmRSS": 1024 * 1024, "VmPTE": 48 * 1024, "VmSwap": 0}


def test_oom_score_is_the_kernels_formula():
    total = 6_000_000  # pages
    assert oom_score_from_badness(None, total) == 0  # oom_score_adj -1000, kernel threads
    assert oom_score_from_badness(0, total) == 666  # (1000 + 0) * 2 / 3
    assert oom_score_from_badness(total, total) == 1333  # a task as large as RAM + swap
    # adj -999 drives badness below zero: C truncates toward zero, the score stays >= 0.
    points = badness_pages(100, 0, 0, -999, total)
    assert points < 0 and oom_score_from_badness(points, total) == (1000 - (abs(points) * 1000 // total)) * 2 // 3
    assert badness_pages(100, 0, 0, -1000, total) is None


def candidate(pid, rss_mib, adj=0, start=None, cgroup="/c", unkillable=None):
    return OomCandidate(pid, start if start is not None else pid, f"p{pid}", cgroup, None, adj, rss_mib * MiB, 0, 0,
                        unkillable)


def test_kill_order_ties_adj_and_the_unkillable():
    total = (96 * MiB) // PAGE
    order = kill_order([
        candidate(10, 20), candidate(11, 30), candidate(12, 30, start=5),  # 11 and 12 tie
        candidate(13, 500, adj=-1000),  # never
        candidate(14, 5, adj=1000),  # + 1000 * (total // 1000) pages: first
        candidate(1, 900, unkillable="the global init (PID 1) is never killed"),
    ], total, "/c", PAGE)
    assert [r.candidate.pid for r in order.ranked] == [14, 11, 12, 10]
    # A tie goes to the task the kernel visits last: memtop puts the newest first and marks both.
    assert order.ranked[1].tied and order.ranked[2].tied and not order.ranked[0].tied
    assert {c.pid for c, _ in order.excluded} == {13, 1}
    assert "never killed" in dict((c.pid, why) for c, why in order.excluded)[13]
    assert order.first.points == 5 * MiB // PAGE + 1000 * (total // 1000)


def test_least_squares_and_the_time_to_the_limit():
    # 2 MiB/s for 30 s with noise; limit 200 MiB; last point ~ 100 MiB.
    noise = [0, 300, -200, 100, -400, 250, -100, 0, 150, -250, 50, 0, -50, 200, -300, 100]
    points = [(1000.0 + 2 * i, 40 * MiB + 4 * MiB * i + noise[i] * 1024) for i in range(16)]
    fit = least_squares(points)
    assert fit.slope == pytest.approx(2 * MiB, rel=0.01) and fit.r2 > 0.99 and fit.points == 16
    result = time_to_limit(points, 200 * MiB, limit_name="memory.max", window_s=60)
    headroom = 200 * MiB - points[-1][1]
    assert result.headroom == headroom and result.seconds == pytest.approx(headroom / fit.slope)
    assert result.window_s == 60 and result.points == 16 and result.r2 == fit.r2
    # Only the window counts: the same points with 20 s window keep the last 11.
    assert time_to_limit(points, 200 * MiB, limit_name="m", window_s=20).points == 11


@pytest.mark.parametrize("values,reason", [
    ([100 * MiB] * 10, "flat or falling"),
    ([100 * MiB - i * MiB for i in range(10)], "flat or falling"),
    ([100 * MiB + i * 4096 for i in range(10)], "flat: under 1 MiB"),
    ([100 * MiB, 101 * MiB], "2 points"),
])
def test_no_time_to_the_limit_when_flat_falling_or_too_few(values, reason):
    points = [(float(i), v) for i, v in enumerate(values)]
    result = time_to_limit(points, 200 * MiB, limit_name="memory.max")
    assert result.seconds is None and reason in result.reason


def test_no_limit_and_already_over():
    points = [(float(i), 100 * MiB + i * MiB) for i in range(6)]
    assert "no limit" in time_to_limit(points, None, limit_name="memory.max").reason
    assert time_to_limit(points, 50 * MiB, limit_name="memory.max").seconds == 0.0


def test_system_time_to_exhaustion_from_memavailable():
    points = [(float(2 * i), 1000 * MiB - 10 * MiB * i) for i in range(10)]  # -5 MiB/s
    result = time_to_exhaustion(points)
    assert result.slope_bytes_per_s == pytest.approx(-5 * MiB)
    assert result.seconds == pytest.approx((1000 - 90) * MiB / (5 * MiB))
    assert result.headroom == (1000 - 90) * MiB  # what MemAvailable has left to fall
    rising = time_to_exhaustion([(float(i), 1000 * MiB + i * MiB) for i in range(10)])
    assert rising.seconds is None and "rising" in rising.reason


# --- the OomWatch, on ticks made from the captured files ---------------------------------------


def flat(path: Path) -> dict[str, int]:
    return {k: int(v) for k, v in (line.split() for line in path.read_text().splitlines() if line.strip())}


def counters(directory: Path, path: str) -> CgroupCounters:
    oom = flat(directory / "memory.oom_control")
    return CgroupCounters(path, 1, oom["oom_kill"], failcnt=int((directory / "memory.failcnt").read_text()),
                          current=int((directory / "memory.usage_in_bytes").read_text()), limit=96 * MiB,
                          oom_totalpages=96 * MiB // PAGE)


def brief(pid, name="python", cgroup="/memtop-test/app", rss=10 * MiB, state="S", score=666, start=None):
    return ProcessBrief(pid, start if start is not None else pid, name, cgroup, rss, rss // 2, 0, state, score, 0, 0)


def tick(t, cgroups, processes, reports=(), vmstat=5):
    return OomTick(t, 1_700_000_000 + t, vmstat, 10_000 * MiB, 6_000_000, PAGE, MappingProxyType(cgroups),
                   MappingProxyType({p.pid: p for p in processes}), tuple(reports))


def captured_ticks(with_report: bool):
    victim = int((FIX / "kmsg-oom.victim").read_text())
    before = {"/memtop-test/app": counters(FIX / "v1/memtop-test/app", "/memtop-test/app"),
              "/memtop-test": counters(FIX / "v1/memtop-test", "/memtop-test")}
    after = {"/memtop-test/app": counters(FIX / "v1-after/memtop-test/app", "/memtop-test/app"),
             "/memtop-test": counters(FIX / "v1-after/memtop-test", "/memtop-test")}
    stay = [brief(21424, rss=35 * MiB), brief(21425, rss=12 * MiB)]
    first = tick(10.0, before, stay + [brief(victim, rss=40 * MiB)], vmstat=5)
    second = tick(12.0, after, stay, [captured_report()] if with_report else [], vmstat=6)
    return victim, first, second


def test_the_watch_records_the_captured_kill_with_the_kernels_victim():
    victim, first, second = captured_ticks(with_report=True)
    watch = OomWatch()
    assert watch.update(first) == []
    [event] = watch.update(second)
    # v1 counts oom_kill in the victim's own cgroup only: the event is the child's.
    assert event.cgroup == "/memtop-test/app" and event.kills == 1
    assert event.scope == "cgroup" and "CONSTRAINT_MEMCG" in event.scope_basis
    assert event.counters["vmstat oom_kill"] == 1
    assert event.limit_hit["/memtop-test"]["failcnt"] > 0  # the parent's page counter refused charges
    [v] = event.victims
    assert v.pid == victim and v.source == "kernel log" and v.kernel.anon_rss == 54528 * 1024
    assert v.last.rss == 40 * MiB and v.last.pss == 20 * MiB  # what memtop saw at the tick before
    assert watch.events == (event,)


def test_without_the_kernel_log_the_victim_is_the_process_that_vanished():
    victim, first, second = captured_ticks(with_report=False)
    watch = OomWatch()
    watch.update(first)
    [event] = watch.update(second)
    assert [v.pid for v in event.victims] == [victim] and event.victims[0].source == "vanished between ticks"
    assert event.scope == "cgroup" and "memory.failcnt of /memtop-test" in event.scope_basis


def test_a_victim_read_while_it_was_being_reaped_is_said_to_hold_what_it_held_before():
    # GIVEN the victim read at 40 MiB, then (the kill under way, the OOM reaper freeing its
    # anonymous memory) at 1 MiB, then gone with the counters moved
    victim, first, second = captured_ticks(with_report=False)
    reaped = tick(11.0, first.cgroups, [*(b for p, b in first.processes.items() if p != victim),
                                        brief(victim, rss=1 * MiB, state="R")], vmstat=5)
    watch = OomWatch()
    watch.update(first)
    assert watch.update(reaped) == []
    [event] = watch.update(second)
    # THEN the victim held the larger of its last two readings
    [v] = event.victims
    assert v.pid == victim and v.last.rss == 40 * MiB
    # AND a process whose PID was reused in between is not mixed with the old one
    watch = OomWatch()
    watch.update(tick(10.0, first.cgroups, [brief(victim, rss=40 * MiB, start=1)]))
    watch.update(tick(11.0, first.cgroups, [brief(victim, rss=1 * MiB, start=2)]))
    [event] = watch.update(tick(12.0, second.cgroups, [], vmstat=6))
    assert [v.last.rss for v in event.victims] == [1 * MiB]


def test_a_victim_still_exiting_is_named_at_the_next_tick_and_events_expire():
    cg = lambda kills, t: {"/c": CgroupCounters("/c", 2, kills, oom=kills, current=90 * MiB, limit=100 * MiB)}  # noqa: E731
    a, b = brief(50, cgroup="/c", rss=80 * MiB), brief(51, cgroup="/c")
    watch = OomWatch(keep_s=100)
    watch.update(tick(0.0, cg(0, 0), [a, b]))
    # The counter moved but the victim is still there (exiting): no victim yet, said so.
    [event] = watch.update(tick(2.0, cg(1, 2), [a, b], vmstat=6))
    assert event.victims == () and "vanished" in event.victim_reason
    assert event.scope == "cgroup" and "memory.events oom of /c" in event.scope_basis
    watch.update(tick(4.0, cg(1, 4), [b], vmstat=6))
    [completed] = watch.events
    assert [v.pid for v in completed.victims] == [50] and completed.victim_reason is None
    watch.update(tick(200.0, cg(1, 200), [b], vmstat=6))
    assert watch.events == ()  # kept for keep_s, then gone


def test_a_victim_slow_to_leave_is_named_within_the_pending_seconds_not_after():
    # An OOM-killed process on a loaded machine (seen on an emulated VM) was still listed two
    # ticks of 0.5 s after its cgroup's counter moved: the event waits pending_s for it.
    cg = lambda kills: {"/c": CgroupCounters("/c", 2, kills, oom=kills, current=90 * MiB, limit=100 * MiB)}  # noqa: E731
    a, b = brief(50, cgroup="/c", rss=80 * MiB), brief(51, cgroup="/c")
    for gone_at, named in ((6.0, [50]), (13.0, [])):
        watch = OomWatch(pending_ticks=2, pending_s=10.0)
        watch.update(tick(0.0, cg(0), [a, b]))
        [event] = watch.update(tick(2.0, cg(1), [a, b], vmstat=6))
        t = 2.0
        while t + 0.5 < gone_at:
            t += 0.5
            watch.update(tick(t, cg(1), [a, b], vmstat=6))
        watch.update(tick(gone_at, cg(1), [b], vmstat=6))
        [completed] = watch.events
        assert [v.pid for v in completed.victims] == named, gone_at
        # Once given up, a later exit of the same process is not taken for the victim.
        watch.update(tick(gone_at + 1, cg(1), [], vmstat=6))
        assert [v.pid for v in watch.events[0].victims] == named


def test_several_vanished_the_largest_is_the_likely_victim_and_a_system_kill_is_its_own_event():
    procs = [brief(60, cgroup="/c", rss=5 * MiB, score=700), brief(61, cgroup="/c", rss=50 * MiB, score=900),
             brief(70, cgroup="/other", rss=1 * MiB)]
    cg = lambda kills: {"/c": CgroupCounters("/c", 2, kills, current=1, limit=None)}  # noqa: E731
    watch = OomWatch()
    watch.update(tick(0.0, cg(0), procs, vmstat=10))
    [event, system] = watch.update(tick(2.0, cg(1), [], vmstat=12))
    assert [v.pid for v in event.victims] == [61] and event.victims[0].source.startswith("likely")
    assert event.scope == "unknown"  # nothing said the limit was hit
    assert system.scope == "system" and system.cgroup is None and system.kills == 1
    assert [v.pid for v in system.victims] == [70]


def test_kill_order_and_trends_from_the_watch():
    procs = [brief(80, cgroup="/c", rss=30 * MiB, start=1), brief(81, cgroup="/c", rss=60 * MiB, start=2),
             brief(82, cgroup="/d", rss=90 * MiB)]
    watch = OomWatch(window_s=60)
    for i in range(8):
        cgroups = {"/c": CgroupCounters("/c", 2, 0, current=50 * MiB + i * 4 * MiB, limit=100 * MiB,
                                        oom_totalpages=100 * MiB // PAGE)}
        watch.update(tick(2.0 * i, cgroups, procs))
    in_c = watch.kill_order("/c")
    assert [r.candidate.pid for r in in_c.ranked] == [81, 80] and in_c.totalpages == 100 * MiB // PAGE
    assert [r.candidate.pid for r in watch.kill_order("system").ranked][0] == 82
    eta = watch.time_to_limit("/c")
    assert eta.slope_bytes_per_s == pytest.approx(2 * MiB) and eta.seconds == pytest.approx((100 - 78) / 2)
    assert watch.time_to_limit("/nothing") is None


def report(pid, memcg, constraint="CONSTRAINT_MEMCG"):
    return KernelOomReport(1, 1, pid, "python", constraint, memcg, memcg, 0, 0, 30 * MiB, 0, 0, 0, 0,
                           f"Memory cgroup out of memory: Killed process {pid} (python) ...")


def test_a_kernel_line_read_before_the_counter_moved_is_used_at_the_next_tick_then_dropped():
    a = brief(90, cgroup="/c", rss=80 * MiB)
    cg = lambda kills: {"/c": CgroupCounters("/c", 2, kills, current=1, limit=100 * MiB)}  # noqa: E731
    watch = OomWatch()
    watch.update(tick(0.0, cg(0), [a]))
    assert watch.update(tick(2.0, cg(0), [a], [report(90, "/c")])) == []  # the line came first
    [event] = watch.update(tick(4.0, cg(1), [], vmstat=6))
    assert [(v.pid, v.source) for v in event.victims] == [(90, "kernel log")] and event.scope == "cgroup"
    # A line nothing explains is tried at one more tick only.
    watch.update(tick(6.0, cg(1), [], [report(91, "/elsewhere")], vmstat=6))
    watch.update(tick(8.0, cg(1), [], vmstat=6))
    watch.update(tick(10.0, cg(1), [], vmstat=6))
    assert watch._unmatched_reports == []


def test_a_kill_in_a_cgroup_memtop_does_not_watch_is_a_system_event_named_by_the_kernel():
    a = brief(95, cgroup="/unwatched", rss=80 * MiB)
    watch = OomWatch()
    watch.update(tick(0.0, {}, [a], vmstat=1))
    [event] = watch.update(tick(2.0, {}, [], [report(95, "/unwatched")], vmstat=2))
    assert event.cgroup is None and event.kills == 1
    assert event.scope == "cgroup" and "oom_memcg=/unwatched" in event.scope_basis
    assert [v.pid for v in event.victims] == [95]


def test_the_frozen_sample_and_its_json():
    import json as jsonlib

    from memtop.model.oom import oom_json, oom_sample
    from memtop.text import json_dumps

    victim, first, second = captured_ticks(with_report=True)
    watch = OomWatch()
    watch.update(first)
    watch.update(second)
    sample = oom_sample(watch, order_limit=1)
    assert sample.events == watch.events and sample.time == second.time
    assert set(sample.cgroup_orders) == {"/memtop-test/app", "/memtop-test"}
    assert all(len(o.ranked) <= 1 for o in sample.cgroup_orders.values())
    data = jsonlib.loads(json_dumps(oom_json(sample)))
    [event] = data["events"]
    assert event["victims"][0]["pid"] == victim and event["victims"][0]["kernel"]["constraint"] == "CONSTRAINT_MEMCG"
    assert data["system_time_to_exhaustion"]["reason"] is not None  # two ticks: too few points


def test_a_victim_still_listed_at_the_tick_its_kill_is_read_holds_what_it_held_at_the_tick_before():
    """CI saw the kernel log's victim with nothing memtop had seen of it (last None): on a busy
    machine the killed process was still in /proc (exiting, its memory being freed) at the tick
    that read the counter and the kernel line. What it held is then its previous tick's brief."""
    victim, first, second = captured_ticks(with_report=True)
    exiting = replace(first.processes[victim], rss=3 * MiB, state="R")
    second = replace(second, processes=MappingProxyType({**second.processes, victim: exiting}))
    watch = OomWatch()
    watch.update(first)
    [event] = watch.update(second)
    [v] = event.victims
    assert v.pid == victim and v.source == "kernel log"
    assert v.last is not None and v.last.rss == 40 * MiB
