"""The Pressure tab: system PSI with small live charts, stall alerts from a PSI trigger, and
memory cgroups (the selected process's, and a tree of all of them against their limits).

It renders the Collector's parts ``psi`` (PSI readings, every tick, whatever tab is shown: the
charts need their history) and ``cgroups`` (a walk of the memory hierarchy while the tab is
shown; the events each cgroup had when memtop first looked are the "since" of events+), and the
app's stall log, which the PSI watcher (memtop/collect/psiwatch.py) feeds: a stall raises
:class:`PressureBanner` on every tab.
"""

from __future__ import annotations

import math
import time

from rich.cells import cell_len
from rich.console import Group
from rich.style import Style
from rich.table import Table
from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Static
from memtop.tui.widgets import CachedPlot, drawn_once, update_static

from memtop.collect.parts import PSI_HISTORY
from memtop.format import counted, fmt_bytes, fmt_count, fmt_percent
from memtop.model.findings import Finding, Severity
from memtop.model.pressure import (
    NEAR_LIMIT_FRACTION,
    PSI_RESOURCES,
    CgroupMemory,
    CgroupsView,
    PressureSample,
    PsiHistory,
    StallEvent,
    cgroup_findings,
    events_since,
    stall_series,
    system_findings,
)
from memtop.model.process import ProcessIdentity
from memtop.model.sample import Sample
from memtop.text import printable
from memtop.tui.tab import NOT_RECORDED, TabView
from memtop.tui.widgets import ago_ticks, series_marker


# --- widgets ----------------------------------------------------------------------------------


class PressureBanner(Static):
    """A one-line alert above the tabs, shown for a while after each stall; click: Pressure tab."""

    SHOW_S = 60.0
    DEFAULT_CSS = """
    PressureBanner { height: 1; display: none; }
    PressureBanner.-alert { display: block; }
    """

    def __init__(self, **kw):
        super().__init__("", **kw)
        self._timer = None

    def show_alert(self, line: str) -> None:
        # Text: a command line may hold [markup]. "(tab 7)": where the details are (a bare "(7)"
        # read as a count).
        self.update(Text(f" ⚠ {printable(line)} (tab 7)"))
        self.add_class("-alert")
        if self._timer is not None:
            self._timer.stop()
        self._timer = self.set_timer(self.SHOW_S, self.clear_alert)

    def clear_alert(self) -> None:
        self.remove_class("-alert")

    def on_click(self, event: events.Click) -> None:
        self.app.query_one("#tabs").active = "tab-pressure"


def chart_columns(series, window_s: float, columns: int) -> tuple[tuple[tuple[int, float, float | None], ...], float]:
    """The stall series as a chart of ``columns`` columns can draw it: each column is
    ``window_s / columns`` seconds, aligned to the clock (its bounds do not move as time passes),
    and holds the largest reading in it (a short stall stays visible). Returns ((x, some, full),
    ...) with x in columns before the newest one (0), and the column's width in seconds."""
    if not series or columns < 1 or window_s <= 0:
        return (), 0.0
    width = window_s / columns
    newest = math.floor(series[-1][0] / width)
    out: dict[int, tuple[float, float | None]] = {}
    for t, some, full in series:
        x = math.floor(t / width) - newest
        if x <= -columns:
            continue
        s0, f0 = out.get(x, (0.0, None))
        out[x] = (max(s0, some), f0 if full is None else max(f0 or 0.0, full))
    return tuple((x, s, f) for x, (s, f) in sorted(out.items())), width


class PsiChart(CachedPlot):
    """Stall ms per second of one resource over the last PSI_HISTORY readings' time, a fixed
    window filled from the right. Redrawn only when its picture changes: the readings are put in
    the chart's columns (:func:`chart_columns`) at its vertical resolution, and a tick whose
    picture is the same (an idle machine: every tick) draws nothing (plotext's rebuild cost ~10 ms
    per chart on the UI thread, every tick; issue 20)."""

    def __init__(self, resource: str, **kw):
        super().__init__(**kw)
        self.resource = resource
        self._drawn_key = None
        self.draws = 0  # pictures built (tests count them)

    def show(self, samples: tuple[PressureSample, ...], reason: str | None, live: bool = True) -> None:
        series = stall_series(samples, self.resource)
        marker, full_marker = series_marker(self.app, 0), series_marker(self.app, 1)
        # The plot's columns: the widget's less the y axis; braille draws two dots per cell.
        width, height = self.size.width or 60, self.size.height or 10
        columns = max(10, width - 7) * (2 if marker == "braille" else 1)
        # A little shorter than the history's span: once the history is full, the leftmost
        # column always holds a reading (else it would come and go as the oldest is dropped).
        window_s = (PSI_HISTORY - 10) * getattr(self.app, "interval", 2.0)
        points, column_s = chart_columns(series, window_s, columns)
        if reason is not None:
            title, picture = f"{self.resource}: no PSI", ()
        elif len(series) < 2:
            title = f"{self.resource}: waiting for readings" if live else f"{self.resource}: one reading (not live)"
            picture = ()
        else:
            title = f"{self.resource} stall ms/s"
            top = max(1.0, max(max(s, f or 0.0) for _, s, f in points) * 1.1)
            levels = max(4, height * 4)  # braille: four dots per cell
            picture = (f"{top:.2g}", tuple((x, round(s / top * levels), None if f is None else round(f / top * levels))
                                           for x, s, f in points))
        key = (title, picture, width, height, window_s, marker)
        if key == self._drawn_key:
            return
        self._drawn_key = key
        self.draws += 1
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        plt.title(title)
        if picture:
            plt.plot([x for x, _, _ in points], [s for _, s, _ in points], marker=marker, label="some")
            fulls = [(x, f) for x, _, f in points if f is not None]
            if any(f for _, f in fulls):
                plt.plot([x for x, _ in fulls], [f for _, f in fulls], marker=full_marker, label="full")
            plt.ylim(0, float(picture[0]))
            plt.xlim(1 - columns, 0)
            ticks, labels = ago_ticks(window_s, 3)
            plt.xticks([t / column_s for t in ticks], labels)
            plt.yfrequency(2)
        self.replot()


class CgroupTree(Static):
    """All memory cgroups: usage against limit, headroom, events since memtop started."""

    COMPONENT_CLASSES = {"cgroup-tree--event", "cgroup-tree--near", "cgroup-tree--selected", "cgroup-tree--muted",
                         "cgroup-tree--header"}

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self._drawn_key = None  # what the table shows (see show)

    def show(self, tree: tuple[CgroupMemory, ...], baselines: dict, selected_path: str | None, note: str) -> None:
        style = self.get_component_rich_style
        # Narrow panes drop use% first, then headroom, so the names keep some room.
        width = self.size.width or 200
        sinces = [events_since(baselines.get(cg.path, {}), cg.events) for cg in tree]
        # The events+ column takes up to 24 cells once a count moves: the names keep ~20 (they
        # shrank to "fe-t…" when failcnt climbed), so use% and then headroom go first.
        events = [" ".join(f"{printable(k)}+{fmt_count(v)}" for k, v in since.items()) for since in sinces]
        events_w = min(24, max(map(len, events), default=0))
        # usage and limit ~11 cells each with their padding, use% 6, headroom 11
        room = width - (events_w + 2 if events_w else 0) - 20
        show_use, show_headroom = width >= 68 and room >= 40, width >= 55 and room >= 34
        rows = []
        for cg, since, events_cell in zip(tree, sinces, events):
            row_style = Style()
            if cg.path == selected_path:
                row_style += style("cgroup-tree--selected")
            if since:
                row_style += style("cgroup-tree--event")
            elif cg.usage_fraction is not None and cg.usage_fraction >= NEAR_LIMIT_FRACTION:
                row_style += style("cgroup-tree--near")
            cells = ["  " * cg.depth + printable(cg.name), fmt_bytes(cg.current),
                     "max" if cg.max is None and "max" not in cg.unknown else fmt_bytes(cg.max)]
            if show_use:
                cells.append(fmt_percent(cg.usage_fraction) if cg.max is not None else "")
            if show_headroom:
                cells.append(fmt_bytes(cg.headroom) if cg.max is not None else "")
            cells.append(events_cell)
            rows.append((tuple(cells), row_style))
        # Every tick brings new figures, mostly the same once formatted: then nothing to draw.
        key = (width, note, tuple(rows), style("cgroup-tree--muted"), style("cgroup-tree--header"))
        if key == self._drawn_key:
            return
        self._drawn_key = key
        table = Table(box=None, padding=(0, 1), expand=True, show_edge=False, header_style=style("cgroup-tree--header"))
        table.add_column("cgroup", no_wrap=True, overflow="ellipsis", ratio=1, min_width=12)
        table.add_column("usage", justify="right", no_wrap=True)
        table.add_column("limit", justify="right", no_wrap=True)
        if show_use:
            table.add_column("use", justify="right", no_wrap=True)
        if show_headroom:
            table.add_column("headroom", justify="right", no_wrap=True)
        table.add_column("events+", overflow="fold", max_width=24)
        for cells, row_style in rows:
            # Text: a str cell is Rich markup, and a replayed file's event names are anyone's.
            table.add_row(*(Text(cell) for cell in cells), style=row_style)
        out = Table.grid()
        out.add_row(Text(printable(note), style=style("cgroup-tree--muted")))
        out.add_row(table)
        update_static(self, out)


# --- the tab -----------------------------------------------------------------------------------


class PressureTab(TabView):
    TAB_TITLE = "Pressure"
    TAB_ID = "pressure"
    TAB_ABOUT = "PSI and stall alerts, cgroup limits"
    COMPONENT_CLASSES = {"pressure--muted", "pressure--heading", "pressure--event", "pressure--critical",
                         "pressure--warning"}
    FIGURE_SOURCES = (
        ("some / full avg10 avg60 avg300", "/proc/pressure/{memory,io,cpu} (Documentation/accounting/psi.rst)"),
        ("ms/s, charts", "Δ total (µs) of /proc/pressure/* between two reads / 1000 / seconds between them"),
        ("trigger", "'some|full THRESHOLD_US WINDOW_US' written to /proc/pressure/memory; poll() for POLLPRI"),
        ("stall log growers", "VmRSS growth of each process over the last minute seen (memtop's history of /proc/PID/status)"),
        ("cgroup of the process", "/proc/PID/cgroup (v2 line 0::, else the v1 line naming 'memory')"),
        ("current / max / high / low / min", "v2 memory.current .max .high .low .min; v1 memory.usage_in_bytes, .limit_in_bytes"),
        ("swap", "v2 memory.swap.current/.max; v1 memsw.usage_in_bytes - usage_in_bytes"),
        ("events", "v2 memory.events; v1 memory.failcnt, memsw.failcnt, memory.oom_control (oom_kill, under_oom)"),
        ("events+", "increase since memtop started (the first read), highlighted"),
        ("breakdown", "v2 memory.stat; v1 memory.stat total_* (rss→anon, cache→file) and memory.kmem.usage_in_bytes"),
        ("cgroup pressure", "v2 memory.pressure (v1 has none)"),
        ("tree", "every directory of the memory hierarchy (mount found in /proc/self/mountinfo)"),
        ("headroom", "max − current; blank when the cgroup has no limit"),
    )

    DEFAULT_CSS = """
    PressureTab { layout: vertical; }
    #pressure-body { height: 1fr; }
    #pressure-trigger { height: auto; }
    #pressure-psi { height: 4; }
    #pressure-charts { height: 7; }
    #pressure-charts PsiChart { width: 1fr; }
    #pressure-lower { height: 1fr; min-height: 8; }
    #pressure-body, #pressure-detail-scroll { scrollbar-gutter: stable; }
    #pressure-detail-scroll { width: 2fr; }
    #pressure-detail { width: 1fr; }
    #pressure-tree-scroll { width: 3fr; padding-left: 1; }
    /* Small terminals: one column, and the whole tab scrolls (PgDn/End reach the stall log). */
    PressureTab.-narrow #pressure-lower { layout: vertical; height: auto; }
    PressureTab.-narrow #pressure-detail-scroll { width: 1fr; height: auto; overflow: hidden hidden; scrollbar-gutter: auto; }
    PressureTab.-narrow #pressure-tree-scroll { width: 1fr; height: auto; overflow: hidden hidden; padding-left: 0; margin-top: 1; }
    PressureTab > .pressure--muted { color: $text-muted; }
    PressureTab > .pressure--heading { text-style: bold; }
    PressureTab > .pressure--event { text-style: bold reverse; color: $error; }
    PressureTab > .pressure--critical { text-style: bold; color: $error; }
    PressureTab > .pressure--warning { color: $warning; }
    """

    PARTS = ("psi", "cgroups")
    TAB_KEYS = (("↑ ↓ PgUp PgDn Home End", "scroll the cgroup detail, its findings and the stall log "
                                           "(the whole tab when its panes are stacked)"),)

    def __init__(self, **kw):
        super().__init__(**kw)
        self.psi: PsiHistory | None = None
        self.cgroups: CgroupsView | None = None
        self.cgroups_error: str | None = None
        self._target: ProcessIdentity | None = None
        self._drawn: tuple | None = None  # (PSI's (value, error), the cgroups', the target) drawn
        self._psi_drawn = None  # the PSI table's rows as drawn (see _show_psi)
        self._detail_drawn = None  # what the detail pane was drawn from (see _show_detail)
        self._detail_body = None  # (what, laid out) of its findings and stall log

    # Below these sizes the cgroup panes stack and the whole tab scrolls instead.
    NARROW_WIDTH = 110
    SHORT_HEIGHT = 34

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="pressure-body"):
            yield Static("", id="pressure-trigger")
            yield Static("", id="pressure-psi")
            with Horizontal(id="pressure-charts"):
                for resource in PSI_RESOURCES:
                    yield PsiChart(resource, id=f"pressure-chart-{resource}")
            with Horizontal(id="pressure-lower"):
                with VerticalScroll(id="pressure-detail-scroll"):
                    yield Static("", id="pressure-detail")
                with VerticalScroll(id="pressure-tree-scroll"):
                    yield CgroupTree("", id="pressure-tree")

    def on_resize(self, event: events.Resize) -> None:
        narrow = event.size.width < self.NARROW_WIDTH or event.size.height < self.SHORT_HEIGHT
        if event.size.width and narrow != self.has_class("-narrow"):  # hidden tabs resize to 0
            self.set_class(narrow, "-narrow")
            self._set_focusable(narrow)
            if self._visible():
                self._focus_scroller()  # the other pane scrolls now: move the focus with it
        if self._visible():
            self.call_after_refresh(self._show_tree)  # its columns depend on the width

    def on_show(self) -> None:
        self._focus_scroller()

    def _set_focusable(self, narrow: bool) -> None:
        """One focusable widget at a time: when the tab hides, Textual moves the focus to a
        focusable sibling of the focused one, which would make this pane active again."""
        self.query_one("#pressure-body").can_focus = narrow
        self.query_one("#pressure-detail-scroll").can_focus = not narrow
        self.query_one("#pressure-tree-scroll").can_focus = False

    def _focus_scroller(self) -> None:
        """Focus what scrolls, so that the scroll keys (PgDn, End, arrows) reach it."""
        def focus() -> None:
            # Checked when it runs: another tab may have been chosen since.
            if self._visible():
                self.query_one("#pressure-body" if self.has_class("-narrow") else "#pressure-detail-scroll").focus()

        self.call_after_refresh(focus)

    def on_mount(self) -> None:
        self._set_focusable(self.has_class("-narrow"))
        self._draw_stalls()  # the tab is built when first shown: the trigger may be armed already

    def _visible(self) -> bool:
        try:
            return self.app.active_tab() is self
        except Exception:  # noqa: BLE001 - during mount/unmount there may be no active pane
            return False

    # --- what the app hands over --------------------------------------------------------------------
    @property
    def trigger_text(self) -> str:
        if self.replaying:
            return "replay: PSI and memory cgroups as recorded (stall alerts are live only)"
        return getattr(self.app, "trigger_text", "trigger: starting")

    @property
    def trigger_armed(self) -> bool:
        return not self.replaying and getattr(self.app, "trigger_armed", False)

    @property
    def log_entries(self):
        return () if self.replaying else getattr(self.app, "stall_log", ())

    @property
    def samples(self) -> tuple[PressureSample, ...]:
        return self.psi.samples if self.psi is not None else ()

    @property
    def baselines(self):
        return self.cgroups.baselines if self.cgroups is not None else {}

    def show_sample(self, sample: Sample) -> None:
        psi_result, cg_result = sample.result("psi"), sample.result("cgroups")
        # By identity of what each part read: a result is also handed over again, marked
        # running, while its part reads anew (another part's result composed meanwhile).
        drawn = tuple(None if r is None else (r.value, r.error) for r in (psi_result, cg_result)) + (self._target,)
        old = self._drawn
        new_psi = old is None or not _same(drawn[0], old[0])
        new_cgroups = old is None or not _same(drawn[1], old[1]) or drawn[2] != old[2]
        if not (new_psi or new_cgroups):
            return  # nothing new for this tab (another part's result)
        # The two parts' results come apart (each tick: PSI's, then the cgroups'): draw what
        # each one feeds. The detail's findings read both.
        self._drawn = drawn
        self.psi = psi_result.value if psi_result is not None else None
        self.cgroups = cg_result.value if cg_result is not None else None
        self.cgroups_error = (cg_result.error if cg_result is not None
                              else NOT_RECORDED if self.replaying else None)
        if self.replaying and self.psi is None:
            self.psi = PsiHistory((), NOT_RECORDED)
        if new_psi:
            self._show_psi()
            self._show_charts()
        self._show_detail()
        if new_cgroups:
            self._show_tree()

    def show_stalls(self) -> None:
        """The trigger's state or the stall log changed (the app keeps them)."""
        if self.is_mounted:
            self._draw_stalls()

    def _draw_stalls(self) -> None:
        self.query_one("#pressure-trigger", Static).update(self._trigger_line())
        if self._visible():
            self._show_detail()

    def show_target(self, target: ProcessIdentity | None) -> None:
        self._target = target

    def _trigger_line(self) -> Text:
        text = Text(" " + self.trigger_text, style="" if self.trigger_armed else self._style("muted"))
        if self.log_entries:
            last = self.log_entries[-1]
            text.append(f"   last stall {time.strftime('%H:%M:%S', time.localtime(last.last))}", style=self._style("critical"))
            text.append("  (stall log: End)", style=self._style("muted"))
        return text

    # --- drawing ----------------------------------------------------------------------------------
    def _no_psi_reason(self) -> str | None:
        return self.psi.unavailable_reason if self.psi is not None else None

    def _show_psi(self) -> None:
        widget = self.query_one("#pressure-psi", Static)
        reason = self._no_psi_reason()
        if reason is not None:
            self._psi_drawn = None
            widget.update(Text(f" No PSI to show: {printable(reason)}.", style=self._style("heading")))
            return
        if not self.samples:
            self._psi_drawn = None
            widget.update(" reading /proc/pressure …")
            return
        latest = self.samples[-1]
        rows = []
        recent = list(self.samples)[-6:]
        for resource in PSI_RESOURCES:
            psi = latest.resources.get(resource)
            if psi is None:
                rows.append((resource, f"? {printable(latest.unknown.get(resource, ''))}"))
                continue
            series = stall_series(recent, resource)
            rate = series[-1] if series else None
            full = psi.full
            rows.append((
                resource,
                f"{psi.some.avg10:.2f}%", f"{psi.some.avg60:.2f}%", f"{psi.some.avg300:.2f}%",
                f"{rate[1]:.1f}" if rate else "?",
                f"{full.avg10:.2f}%" if full else "?", f"{full.avg60:.2f}%" if full else "?",
                f"{full.avg300:.2f}%" if full else "?",
                f"{rate[2]:.1f}" if rate and rate[2] is not None else "?",
            ))
        key = (tuple(rows), self._style("heading"), self._style("muted"))
        if key == self._psi_drawn:
            return  # the same figures once formatted (an idle machine: every tick)
        self._psi_drawn = key
        update_static(widget, psi_table(rows, self._style("heading"), self._style("muted")))

    def _show_charts(self) -> None:
        reason = self._no_psi_reason()
        samples = tuple(self.samples)
        for chart in self.query(PsiChart):
            chart.show(samples, reason, self.psi.live if self.psi is not None else False)

    def _show_detail(self) -> None:
        result = self.cgroups
        selected = result.selected if result else None
        detail = self.query_one("#pressure-detail", Static)
        width = detail.content_size.width
        findings = self.findings()
        styles = tuple(self._style(n) for n in ("heading", "muted", "event", "critical", "warning"))
        body_key = (width, tuple(findings), self.trigger_armed,
                    tuple((e.first, e.last, e.count, e.event) for e in self.log_entries), styles)
        key = (body_key, self._target, self.cgroups_error, result is None,
               None if result is None else (result.error, result.target_pid, result.selected_reason),
               selected, self.baselines.get(selected.path) if selected is not None else None)
        if key == self._detail_drawn:
            return  # nothing it shows has changed (no process selected, no stall: every tick)
        self._detail_drawn = key
        parts: list = []
        if result is None:
            parts.append(Text(f" cgroups: {printable(self.cgroups_error)}" if self.cgroups_error else " reading cgroups …",
                              style=self._style("muted")))
        elif result.error:
            parts.append(Text(f" cgroups: {printable(result.error)}", style=self._style("muted")))
        elif self._target is None:
            parts.append(Text(" Select a process (Processes tab) to see its cgroup.", style=self._style("muted")))
        elif result.target_pid != self._target.pid:
            parts.append(Text(f" PID {self._target.pid}: reading its cgroup …", style=self._style("muted")))
        elif selected is None:
            parts.append(Text(f" PID {self._target.pid}: cgroup unknown: {printable(result.selected_reason)}", style=self._style("muted")))
        else:
            parts.append(cgroup_detail(self._target.pid, selected, self.baselines.get(selected.path), self._style))
        # The findings and the stall log change far less often than the cgroup's figures above
        # them: laid out once while they stay the same (a rich grid each, ~2 ms per redraw).
        if self._detail_body is None or self._detail_body[0] != body_key:
            body = self._findings_and_log(findings)
            self._detail_body = (body_key, drawn_once(self.app, body, width) if width > 0 else body)
        parts.append(self._detail_body[1])
        update_static(detail, Group(*parts))

    def _findings_and_log(self, findings: list[Finding]) -> Table:
        # Findings and log lines wrap under their own text, not back to column 0.
        body = Table.grid()
        body.add_column(width=1)
        body.add_column(ratio=1)
        body.add_row("", "")
        body.add_row("", Text("Findings", style=self._style("heading")))
        if not findings:
            # What is true now, not since start: the stall log below keeps what passed.
            logged = sum(entry.count for entry in self.log_entries)
            body.add_row("", Text("none now: no cgroup ≥ 90% of its limit, no reclaim stall in the last 10 s (memory "
                                  "full avg10 0), no OOM kill in the cgroup tree since memtop started"
                                  + (f"; {counted(logged, 'stall')} in the stall log below" if logged else ""),
                                  style=self._style("muted")))
        for f in findings:
            body.add_row("", Text(f"{f.severity.value.upper()}: {printable(f.text)}",
                                  style=self._style("critical" if f.severity.value == "critical" else "warning")))
            if f.next_step:
                body.add_row("", Text(f"  → {printable(f.next_step)}", style=self._style("muted")))
        body.add_row("", "")
        body.add_row("", Text("Stall log", style=self._style("heading")))
        if not self.log_entries:
            body.add_row("", Text("no stall since memtop started" if self.trigger_armed else "(no trigger armed)",
                                  style=self._style("muted")))
        for entry in reversed(self.log_entries):
            times = time.strftime("%H:%M:%S", time.localtime(entry.first))
            if entry.count > 1:
                times += f"–{time.strftime('%H:%M:%S', time.localtime(entry.last))} ×{entry.count}"
            line = Text(f"{times} ", style=self._style("heading"))
            line.append(stall_line(entry.event, with_time=False, who=False))
            body.add_row("", line)
            # One grower per line, figure first: a narrow pane cuts the name, never the unit.
            for g in entry.event.growers:
                body.add_row("", Text(f"  {_growth(g)}  PID {g.pid} {_grower_name(g)}", no_wrap=True,
                                      overflow="ellipsis"))
            if not entry.event.growers:
                body.add_row("", Text("  no process's RSS was growing", style=self._style("muted")))
        return body

    def _show_tree(self) -> None:
        result = self.cgroups
        tree = self.query_one(CgroupTree)
        if result is None or result.version is None:
            error = result.error if result is not None else self.cgroups_error
            tree._drawn_key = None  # the table, when it comes back, is drawn again
            tree.update(Text(" " + (printable(error) if error else "reading cgroups …"), style=self._style("muted")))
            return
        since = "the oldest tick in the file" if self.replaying else "memtop started"
        note = f" {len(result.tree)} memory cgroups (v{result.version}, {result.mount}); events+ = since {since}"
        selected_path = result.selected.path if result.selected else None
        tree.show(result.tree, self.baselines, selected_path, note)

    def _style(self, name: str) -> Style:
        return self.get_component_rich_style(f"pressure--{name}")

    def findings(self) -> list[Finding]:
        out = system_findings(self.samples[-1] if self.samples else None)
        result = self.cgroups
        if result is None:
            return out
        seen = set()
        cgroups = list(result.tree)
        if result.selected is not None:
            cgroups.insert(0, result.selected)
        for cg in cgroups:
            if cg.path in seen:
                continue
            seen.add(cg.path)
            out.extend(cgroup_findings(cg, events_since(self.baselines.get(cg.path, {}), cg.events),
                                       "the oldest tick in the file" if self.replaying else "memtop started"))
        # The most severe first (a WARNING on system PSI stood above a CRITICAL cgroup at its limit)
        return sorted(out, key=lambda f: _SEVERITY_RANK[f.severity])


_SEVERITY_RANK = {Severity.CRITICAL: 0, Severity.WARNING: 1, Severity.INFO: 2}

PSI_COLUMNS = ("PSI", "some avg10", "avg60", "avg300", "ms/s", "full avg10", "avg60", "avg300", "ms/s")


def psi_table(rows: list[tuple[str, ...]], heading: Style, muted: Style) -> Text:
    """The PSI figures as a table of fixed columns: the name left, the figures right, two
    spaces between (a rich Table laid this out in ~5 ms at every PSI read, the tab's largest
    cost on an idle machine; issue 20). A row of two is a resource with its unknown reason."""
    widths = [len(c) for c in PSI_COLUMNS]
    for row in rows:
        widths[0] = max(widths[0], len(row[0]))
        if len(row) == len(PSI_COLUMNS):
            widths[1:] = [max(w, len(v)) for w, v in zip(widths[1:], row[1:])]

    def line(cells) -> str:
        return " " + cells[0].ljust(widths[0]) + "".join("  " + v.rjust(w) for v, w in zip(cells[1:], widths[1:])) + " "

    text = Text(no_wrap=True, overflow="ellipsis", end="")
    text.append(line(PSI_COLUMNS), style=heading)
    for row in rows:
        text.append("\n")
        if len(row) == len(PSI_COLUMNS):
            text.append(line(row))
        else:
            text.append(" " + row[0].ljust(widths[0]) + "  ")
            text.append(row[1], style=muted)
    return text


def _same(a: tuple | None, b: tuple | None) -> bool:
    """Two parts' (value, error) pairs: the same value object and error."""
    return a is b or (a is not None and b is not None and a[0] is b[0] and a[1] == b[1])


def stall_line(event: StallEvent, short: bool = False, with_time: bool = True, who: bool = True) -> str:
    """The log line of a stall: time, PSI, and who grew. ``short``: for the one-line banner,
    which must fit 80 columns with its figure and unit whole (the name gives way first)."""
    when = time.strftime("%H:%M:%S ", time.localtime(event.wall_time)) if with_time else ""
    if short:
        # What fired, not avg10: a stall of 200 ms in 2 s is 0.0 % in a 10 s average (a new
        # user read "stall some 0.0%" as a false alarm).
        t = event.trigger
        psi = (f" {t.kind} ≥{t.threshold_us / 1000:g} ms/{t.window_us / 1e6:g} s" if t is not None
               else f" some {event.memory.some.avg10:.1f}%" if event.memory is not None else "")
        if not event.growers:
            return f"{when}memory stall{psi}; no process's RSS was growing"
        g = event.growers[0]
        # name[PID] as always; memtop itself as "memtop" (two memtops may run: the PID tells them apart)
        who = f"{'memtop' if g.own else _short_name(g.name, 12)}[{g.pid}]"
        return f"{when}memory stall{psi}: {who} {_growth(g)}"
    psi = ""
    if event.memory is not None:
        psi = f" (memory some avg10 {event.memory.some.avg10:.2f}%"
        if event.memory.full is not None:
            psi += f", full {event.memory.full.avg10:.2f}%"
        psi += ")"
    trigger = f": {event.trigger.describe()} passed" if event.trigger else ""
    if not who:
        return f"{when}memory stall{trigger}{psi}"
    if event.growers:
        who = ", ".join(f"PID {g.pid} {_grower_name(g)} {_growth(g)}" for g in event.growers)
    else:
        who = "no process's RSS was growing"
    return f"{when}memory stall{trigger}{psi}; grew most: {who}"


def _growth(g) -> str:
    """What was seen, not a projection: ``+260 MiB in 16 s``."""
    return f"{fmt_bytes(g.growth_bytes, signed=True)} in {g.span_s:.0f} s"


def _short_name(name: str, width: int = 20) -> str:
    """The program's base name from a command line (``/usr/bin/python3 -m x`` -> ``python3``)."""
    first = name.split()[0] if name.split() else name
    return printable(first.rsplit("/", 1)[-1], width)


def _grower_name(g) -> str:
    return _short_name(g.name) + (" (memtop itself)" if g.own else "")


class FigureGrid:
    """A Rich renderable: :func:`figure_grid` laid out for the width it is given when drawn."""

    def __init__(self, items: list[tuple[str, Text | str]]):
        self.items = items

    def __rich_console__(self, console, options):
        yield figure_grid(self.items, options.max_width)


def figure_grid(items: list[tuple[str, Text | str]], width: int) -> Text:
    """Label/value pairs laid out in as many pairs per row as ``width`` holds (at most 3).

    Every cell is no_wrap, so a number never wraps away from its unit (or its label): the pairs
    per row drop, down to one, on a narrow pane instead. Lines of Text with the columns padded
    as a rich Table.grid pads them (which took ~1 ms to lay out each grid at every redraw of the
    Pressure tab's detail; issue 20); a line wider than ``width`` ends in an ellipsis.
    """
    # Text, not str: a str cell would be read as markup, and keys and values may come from a file.
    labels = [printable(k) for k, _ in items]
    values = [Text(printable(v)) if isinstance(v, str) else v for _, v in items]
    for per_row in (3, 2, 1):
        # " label value" for the first pair, "  label value" for the others.
        label_w = [max((cell_len(k) for k in labels[i::per_row]), default=0) + (2 if i == 0 else 3)
                   for i in range(per_row)]
        value_w = [max((v.cell_len for v in values[i::per_row]), default=0) for i in range(per_row)]
        if sum(label_w) + sum(value_w) <= width or per_row == 1:
            break
    out = Text(no_wrap=True, overflow="ellipsis")
    for start in range(0, len(items), per_row):
        if start:
            out.append("\n")
        for i in range(per_row):
            if start + i >= len(items):  # the last row's empty cells, padded as a grid pads them
                out.append(" " * (label_w[i] + value_w[i]))
                continue
            cell = (" " if i == 0 else "  ") + labels[start + i] + " "
            value = values[start + i]
            out.append(cell + " " * (label_w[i] - cell_len(cell)))
            out.append_text(value)
            out.append(" " * (value_w[i] - value.cell_len))
    return out


def cgroup_detail(pid: int, cg: CgroupMemory, baseline: dict | None, style) -> Group:
    """The selected process's cgroup, figure by figure (a grid); unknowns with their reason.

    ``style(name)`` gives the Rich style of the tab's component class ``pressure--<name>``.
    """
    parts: list = []
    head = Table.grid()  # a long path folds under itself, not back to column 0
    head.add_column(width=1)
    head.add_column(ratio=1, overflow="fold")
    title = Text(f"PID {pid} in cgroup v{cg.version} ", style=style("heading"))
    title.append(printable(cg.path), style="")
    head.add_row("", title)
    parts.append(head)

    def limit(value: int | None, key: str) -> str:
        if value is None:
            return "?" if key in cg.unknown and not cg.unknown[key].startswith("cgroup v1") else "max"
        return fmt_bytes(value)

    items: list[tuple[str, Text | str]] = [("current", fmt_bytes(cg.current)), ("max", limit(cg.max, "max"))]
    if cg.max is not None:
        items += [("use", fmt_percent(cg.usage_fraction)), ("headroom", fmt_bytes(cg.headroom))]
    if cg.version == 2:
        items += [("high", limit(cg.high, "high")), ("low", fmt_bytes(cg.low)), ("min", fmt_bytes(cg.min)),
                  ("swap", f"{fmt_bytes(cg.swap_current)} of {limit(cg.swap_max, 'swap_max')}")]
    else:
        items += [("soft limit", limit(cg.soft_limit, "soft_limit")), ("peak", fmt_bytes(cg.max_usage)),
                  ("mem+swap", f"{fmt_bytes(cg.memsw_usage)} of {limit(cg.memsw_limit, 'memsw_limit')}"),
                  ("swap", fmt_bytes(cg.swap_current))]
    parts.append(FigureGrid(items))
    if cg.version != 2:
        parts.append(Text(" (v1: no high/low/min, no cgroup pressure)", style=style("muted")))
    since = events_since(baseline or {}, cg.events)
    parts.append(Text(" events", style=style("heading")))
    if not cg.events:
        parts.append(Text(f" ? {printable(cg.unknown.get('events', cg.unknown.get('failcnt', '')))}", style=style("muted")))
    else:
        events_items: list[tuple[str, Text | str]] = []
        for key, value in cg.events.items():
            if key in since:
                events_items.append((key, Text(f"{value} (+{since[key]})", style=style("event"))))
            else:
                events_items.append((key, str(value)))
        parts.append(FigureGrid(events_items))
    if cg.stat:
        parts.append(Text(" stat", style=style("heading")))
        parts.append(FigureGrid([(k, fmt_bytes(v)) for k, v in cg.stat.items()]))
    elif "stat" in cg.unknown:
        parts.append(Text(f" stat ? {printable(cg.unknown['stat'])}", style=style("muted")))
    if cg.pressure is not None:
        p = cg.pressure
        parts.append(Text(" memory.pressure", style=style("heading")))
        pressure_items: list[tuple[str, Text | str]] = [
            ("some avg10", f"{p.some.avg10:.2f}%"), ("some avg60", f"{p.some.avg60:.2f}%")]
        if p.full:
            pressure_items += [("full avg10", f"{p.full.avg10:.2f}%"), ("full avg60", f"{p.full.avg60:.2f}%")]
        parts.append(FigureGrid(pressure_items))
    return Group(*parts)
