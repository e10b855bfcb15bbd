"""Findings, events since start, stall lines and growers: derived from models (and the watch's own PID, from /proc/self)."""

from __future__ import annotations

import os
from pathlib import Path

from memtop.model.findings import Severity
from memtop.model.pressure import (
    CgroupMemory,
    PressureSample,
    PsiLine,
    PsiResource,
    StallEvent,
    cgroup_findings,
    events_since,
    system_findings,
    top_growers,
)
from memtop.model.process import History, ProcessIdentity, ProcessSample, ProcessView
from memtop.procfs.pressure import parse_trigger_spec
from memtop.tui.pressure import figure_grid, stall_line

MiB = 1 << 20


def view(pid: int, name: str, rss: list[int | None], change: float | None = None, dt: float = 2.0) -> ProcessView:
    sample = ProcessSample(
        identity=ProcessIdentity(pid, 100 + pid), ppid=1, comm=name, cmdline=f"/usr/bin/{name} --serve", user="root",
        state="S", kernel_thread=False, rss_bytes=rss[-1], anon_bytes=None, file_bytes=None, shmem_bytes=None,
        swap_bytes=None, threads=1, minflt=0, majflt=0, fd_count=3, fd_reason=None, rollup=None,
        rollup_reason="not read", rollup_time=None,
    )
    times = tuple(10.0 - dt * (len(rss) - 1 - i) for i in range(len(rss)))
    history = _HISTORIES[pid] = History.from_points((t, r, 3) for t, r in zip(times, rss))
    return ProcessView(sample, None, None, change, since=history.since, runs=history.runs)


_HISTORIES: dict[int, History] = {}  # by PID: each view here has its own times (Snapshot.history)


def history_of(view: ProcessView) -> History:
    return _HISTORIES[view.pid]


def test_growers_say_what_was_seen_over_the_window_and_ignore_shrinking():
    views = [
        view(10, "steady", [100 * MiB, 100 * MiB]),
        # 31 samples 2 s apart = 60 s: the whole window, from 100 to 130 MiB.
        view(11, "leaker", [100 * MiB + i * MiB for i in range(31)]),
        # One 260 MiB step in 16 s: "+260 MiB in 16 s", not a per-minute projection.
        view(12, "spike", [10 * MiB, 270 * MiB], dt=16.0),
        view(13, "shrinker", [50 * MiB, 40 * MiB]),
        view(14, "unknown", [None, 5 * MiB]),
        # Longer than the window: only the last 60 s count (from 110 MiB, not 10 MiB).
        view(15, "old", [10 * MiB] + [110 * MiB] * 30 + [150 * MiB]),
    ]
    growers = top_growers(views, history_of)
    assert [(g.pid, g.growth_bytes, g.span_s) for g in growers] == [
        (12, 260 * MiB, 16.0), (15, 40 * MiB, 60.0), (11, 30 * MiB, 60.0)]
    assert growers[0].rss == 270 * MiB and growers[0].name == "/usr/bin/spike --serve"
    assert top_growers(views, history_of, count=1)[0].pid == 12


def test_stall_line_names_time_psi_and_growers():
    memory = PsiResource(PsiLine(12.5, 3.0, 1.0, 900_000), PsiLine(4.25, 1.0, 0.2, 300_000))
    event = StallEvent(0.0, parse_trigger_spec("some 200000 2000000"), memory,
                       top_growers([view(22173, "demo", [10 * MiB, 270 * MiB], dt=16.0)], history_of))
    line = stall_line(event)
    assert "memory stall: some 200 ms per 2 s window passed" in line
    assert "some avg10 12.50%, full 4.25%" in line
    assert "PID 22173 demo +260 MiB in 16 s" in line and "/min" not in line
    short = stall_line(event, short=True)
    assert "per 2 s window" not in short and short.endswith("memory stall some ≥200 ms/2 s: demo[22173] +260 MiB in 16 s")
    # The banner (" ⚠ " + line + " (tab 7)") fits 80 columns with the unit whole.
    assert len(f" ⚠ {short} (tab 7)") <= 80
    assert stall_line(event, with_time=False, who=False).endswith("(memory some avg10 12.50%, full 4.25%)")
    quiet = stall_line(StallEvent(0.0, None, None, ()))
    assert "no process's RSS was growing" in quiet
    # memtop itself as the grower says so, in the log and in the banner (which still fits)
    own = StallEvent(0.0, parse_trigger_spec("some 200000 2000000"), memory,
                     top_growers([view(22173, "demo", [10 * MiB, 270 * MiB], dt=16.0)], history_of, own_pid=22173))
    assert "PID 22173 demo (memtop itself) +260 MiB in 16 s" in stall_line(own)
    short = stall_line(own, short=True)
    assert short.endswith(": memtop[22173] +260 MiB in 16 s")
    # the banner's rule: its figure and unit whole within 80 columns (the name gives way first)
    assert len(f" ⚠ {short}") <= 80


def test_events_since_start():
    assert events_since(None, {"oom_kill": 3}) == {}
    base = {"failcnt": 10, "oom_kill": 1, "under_oom": 0}
    assert events_since(base, {"failcnt": 25, "oom_kill": 1, "under_oom": 1}) == {"failcnt": 15}
    # A cgroup created after memtop started: its baseline is empty, every event is new.
    assert events_since({}, {"oom": 2, "oom_kill": 1, "max": 0}) == {"oom": 2, "oom_kill": 1}
    # A counter the baseline did not read (the walk skips memsw.failcnt): unknown, not new.
    assert events_since({"failcnt": 1}, {"failcnt": 1, "memsw_failcnt": 7}) == {}
    # A counter that went down: the cgroup was re-created under the same name.
    assert events_since({"max": 50}, {"max": 4}) == {"max": 4}


def cgroup(current, limit, events=None, pressure=None) -> CgroupMemory:
    return CgroupMemory(2, "/svc", current, limit, events=events or {}, pressure=pressure)


def test_near_limit_finding_at_90_percent():
    assert cgroup_findings(cgroup(89 * MiB, 100 * MiB), {}) == []
    (warn,) = cgroup_findings(cgroup(90 * MiB, 100 * MiB), {})
    assert warn.severity is Severity.WARNING and "90% of its limit (90.0 of 100.0 MiB)" in warn.text
    (crit,) = cgroup_findings(cgroup(99 * MiB, 100 * MiB), {})
    assert crit.severity is Severity.CRITICAL
    assert cgroup_findings(cgroup(99 * MiB, None), {}) == []  # unlimited


def test_full_stall_and_oom_kill_findings():
    stalled = PsiResource(PsiLine(5, 1, 0, 10), PsiLine(0.5, 0.1, 0, 5))
    findings = cgroup_findings(cgroup(1 * MiB, None, pressure=stalled), {"oom_kill": 2})
    texts = [f.text for f in findings]
    assert any("stalled on memory 0.50%" in t for t in texts)
    assert next(f for f in findings if "stalled" in f.text).severity is Severity.INFO  # below 1%
    assert any("killed 2 processes" in t for t in texts)
    calm = PsiResource(PsiLine(5, 1, 0, 10), PsiLine(0.0, 0.1, 0, 5))
    assert cgroup_findings(cgroup(1 * MiB, None, pressure=calm), {"failcnt": 9}) == []


def test_system_full_avg10_finding():
    assert system_findings(None) == []
    calm = PressureSample(0, {"memory": PsiResource(PsiLine(1, 0, 0, 1), PsiLine(0, 0, 0, 1))})
    assert system_findings(calm) == []
    stalled = PressureSample(0, {"memory": PsiResource(PsiLine(9, 0, 0, 1), PsiLine(1.81, 0, 0, 1))})
    (finding,) = system_findings(stalled)
    assert "1.81%" in finding.text and finding.severity is Severity.WARNING
    # 1 ms in 10 s (an idle machine after a burst of page-ins) is noted, not a warning
    brief = PressureSample(0, {"memory": PsiResource(PsiLine(0.02, 0, 0, 1), PsiLine(0.01, 0, 0, 1))})
    (finding,) = system_findings(brief)
    assert finding.severity is Severity.INFO and "0.01%" in finding.text and "a warning from 1%" in finding.text


def test_figure_grid_never_parts_a_number_from_its_unit():
    import io

    from rich.console import Console

    items = [("current", "31.9 MiB"), ("max", "32.0 MiB"), ("mem+swap", "31.9 MiB of max"),
             ("file_writeback", "0 B"), ("anon_thp", "652 KiB"), ("swap", "0 B")]
    for width in range(32, 121):  # below 32 the widest pair itself cannot fit
        console = Console(width=width, record=True, file=io.StringIO(), color_system=None)
        console.print(figure_grid(items, width))
        lines = console.export_text().splitlines()
        assert all(len(line.rstrip()) <= width for line in lines), width
        text = "\n".join(lines)
        for label, value in items:
            assert value in text and label in text, (width, value)  # whole, on one line
        # As many pairs per row as fit: one per row only when two do not.
        assert len(lines) == (6 if width < 50 else 3 if width < 69 else 2), (width, lines)


def test_psi_table_lines_up_as_a_table_and_keeps_an_unknown_reason():
    from rich.style import Style

    from memtop.tui.pressure import psi_table

    rows = [("memory", "12.50%", "0.00%", "0.00%", "1250.0", "0.00%", "0.00%", "0.00%", "0.0"),
            ("io", "? no such file")]
    heading = Style(bold=True)
    text = psi_table(rows, heading, Style(dim=True))
    header, memory, io_line = text.plain.split("\n")
    assert header == " PSI     some avg10  avg60  avg300    ms/s  full avg10  avg60  avg300  ms/s "
    # each figure ends under its heading's end (right-aligned), the name under "PSI"
    for heading_end, value in ((header.index("some avg10") + 10, "12.50%"), (header.index("ms/s") + 4, "1250.0")):
        assert memory.index(value) + len(value) == heading_end
    assert io_line == " io      ? no such file"
    # the heading's style is the header line's only
    assert [(span.start, span.end, span.style) for span in text.spans if span.style == heading] == [(0, len(header), heading)]


def test_the_watch_knows_its_own_pid_only_in_the_live_proc():
    from memtop.collect.psiwatch import PsiWatch

    live, captured = PsiWatch(None), PsiWatch(None, root=Path(__file__).resolve().parent.parent / "fixtures")
    try:
        assert live._own_pid() == os.getpid()  # /proc/self, as the stall event marks memtop's row
        assert captured._own_pid() is None  # a captured tree has no "self": no row is marked
    finally:
        live.stop()
        captured.stop()
