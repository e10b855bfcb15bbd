"""Containers tab: memory per container, pod, machine or systemd unit, as the kernel charges it.

Why a pod is OOM-killed with its RSS under the limit: the limit counts page cache, tmpfs, kernel
and socket memory that no process's RSS shows. Each row is one cgroup a runtime or systemd made
(named from its path, and from the runtime's files where they name it): memory.current against
its limit (memory.max, or a parent's when that is lower), the split of memory.stat, the members'
PSS, what reclaim can still free before an OOM kill, the trend's time to the limit and the OOM
kills seen. Below: the highlighted container in detail with its kill order, the OOM kills of the
last ten minutes with their victims, and the system's time to exhaustion of MemAvailable.

The figures are the containers part's (memtop/collect/parts.py, ContainersPart); the OOM watch
learns while this tab is shown (its trends need a minute of ticks; its kills are those seen
meanwhile, the kernel log naming the victims when memtop can read /dev/kmsg).
"""

from __future__ import annotations

import re

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import DataTable, Static

from memtop.format import UNKNOWN, counted, fmt_bytes, fmt_clock, fmt_duration, fmt_percent
from memtop.model.containers import ContainerMemory, ContainersView, container_findings
from memtop.model.findings import Severity
from memtop.model.oom import EVENTS_KEPT_S
from memtop.model.sample import Sample
from memtop.text import printable
from memtop.tui.tab import NOT_RECORDED, TabView
from memtop.tui.widgets import flow_text, update_static

# 120 columns wide with the cell padding: the use in per cent is in the detail below.
COLUMNS = (
    ("CONTAINER", 22), ("USED", 8), ("LIMIT", 8), ("ANON", 8), ("FILE", 8), ("SHMEM", 8),
    ("KERNEL", 8), ("PSS", 8), ("RECLAIM", 8), ("TO LIMIT", 8), ("OOM", 3),
)
# Narrower than NARROW_WIDTH (the full table needs ~120 columns with cell padding) the table
# keeps these, the name in NARROW_NAME columns; the split (file, shmem, kernel) and what reclaim
# can free stay in the highlighted container's detail below it.
NARROW_WIDTH = 120
NARROW_COLUMNS = ("CONTAINER", "USED", "LIMIT", "ANON", "PSS", "TO LIMIT", "OOM")
NARROW_NAME = 16
EVENTS_SHOWN = 8


def columns_for(width: int) -> tuple[tuple[str, int], ...]:
    if width >= NARROW_WIDTH:
        return COLUMNS
    return tuple((title, NARROW_NAME if title == "CONTAINER" else w) for title, w in COLUMNS if title in NARROW_COLUMNS)


def _b(value: int | None) -> str:
    return fmt_bytes(value) if value is not None else UNKNOWN


def time_to_limit_text(eta) -> str:
    """The trend's answer in a cell: seconds to the limit, or a dash with no answer."""
    if eta is None or eta.seconds is None:
        return "-"
    return "now" if eta.seconds <= 0 else fmt_duration(eta.seconds)


def container_row(entry: ContainerMemory, eta) -> tuple[Text, ...]:
    """The table's cells, as Text: a DataTable's str cell is Rich markup, and a cgroup's name is
    its owner's choice (`[i]` in it hid itself and styled the rest)."""
    split = entry.split
    kills = entry.events.get("oom_kill")
    return tuple(Text(cell) for cell in (
        printable(entry.container.label, 22),
        _b(entry.current),
        _b(entry.limit) if entry.limit is not None else "none",
        _b(split.get("anon")),
        _b(split.get("file")),
        _b(split.get("shmem")),
        _b(split.get("kernel")),
        _b(entry.members.pss),
        _b(entry.reclaim.total),
        time_to_limit_text(eta),
        str(kills) if kills is not None else UNKNOWN,
    ))


# The reclaim line's words for its figures (detail_text)
_RECLAIM_WORDS = {"file_clean": "clean page cache", "slab_reclaimable": "reclaimable slab", "by_swap": "by swap"}


def detail_text(entry: ContainerMemory, oom) -> Text:
    """The highlighted container: where each figure comes from, what reclaim can free, why a
    figure is unknown, the findings and the kill order within it."""
    c = entry.container
    split = entry.split
    t = Text()
    t.append(printable(c.label), style="bold")
    t.append(f"  cgroup {printable(entry.memory_path)} (v{entry.version}), named from {printable(c.name_source)}\n")
    limit = (f"{_b(entry.limit)}" + (f" (set by {printable(entry.limit_from)})"
                                      if entry.limit_from and entry.limit_from != entry.memory_path else "")
             if entry.limit is not None else "none")
    use = f" ({fmt_percent(entry.usage_fraction)})" if entry.usage_fraction is not None else ""
    t.append(f"used {_b(entry.current)}{use} of limit {limit}; high {_b(entry.high) if entry.high is not None else 'none'}"
             f"; peak {_b(entry.peak)}\n")
    kernel_parts = ", ".join(f"{k} {_b(split.get(k))}" for k in ("slab_reclaimable", "slab_unreclaimable",
                                                                  "kernel_stack", "pagetables", "percpu")
                             if split.get(k) is not None)
    t.append(f"anon {_b(split.get('anon'))}; file {_b(split.get('file'))} (active {_b(split.get('active_file'))}, "
             f"inactive {_b(split.get('inactive_file'))}, dirty {_b(split.get('file_dirty'))}); "
             f"shmem/tmpfs {_b(split.get('shmem'))}; kernel {_b(split.get('kernel'))}"
             + (f" ({kernel_parts})" if kernel_parts else "") + f"; sock {_b(split.get('sock'))}\n")
    m = entry.members
    pss_of = f" ({m.pss_known} of {len(m.pids)} known)" if m.pss_known != len(m.pids) else ""
    # no member: nothing to sum, 0 (its memory is page cache and kernel memory left behind)
    pss, rss = (m.pss, m.rss) if m.pids else (0, 0)
    t.append(f"{counted(len(m.pids), 'process', 'processes')}: PSS {_b(pss)}{pss_of}, RSS {_b(rss)}; "
             f"page cache charged here {_b(entry.page_cache)}\n")
    r = entry.reclaim
    t.append(f"reclaim can free before an OOM kill: clean page cache {_b(r.file_clean)}, after writeback "
             f"{_b(r.file_dirty_writeback)}, reclaimable slab {_b(r.slab_reclaimable)}, by swap {_b(r.by_swap)} "
             f"({printable(entry.swap.reason)}) = {_b(r.total)}; cannot {_b(r.cannot)}\n")
    if entry.events:
        deltas = entry.events_delta
        t.append("events: " + ", ".join(f"{printable(k)} {v}" + (f" (+{deltas[k]})" if deltas.get(k) else "")
                                        for k, v in sorted(entry.events.items())) + "\n")
    if entry.pressure is not None:
        p = entry.pressure
        t.append(f"memory.pressure: some avg10 {p.some.avg10:.2f}%"
                 + (f", full avg10 {p.full.avg10:.2f}%" if p.full is not None else "") + "\n")
    if entry.shared:
        t.append(f"{printable(entry.shared)}\n", style="italic")
    eta = oom.cgroup_times.get(entry.memory_path) if oom is not None else None
    for finding in container_findings(entry, eta):
        style = "bold red" if finding.severity is Severity.CRITICAL else "bold yellow"
        t.append(f"▲ {printable(finding.text)}", style=style)
        if finding.next_step:
            t.append(f" → {printable(finding.next_step)}")
        t.append("\n")
    order = oom.cgroup_orders.get(entry.limit_from or entry.memory_path) if oom is not None else None
    if order is None and oom is not None:
        order = oom.cgroup_orders.get(entry.memory_path)
    if order is not None and order.ranked:
        t.append("kill order at its limit: ")
        t.append(", ".join(f"{r.candidate.pid} {printable(r.candidate.name, 24)} ({r.points} pages"
                           + (", tied" if r.tied else "") + ")" for r in order.ranked[:3]))
        t.append("\n")
    # The figures not known, in words ("kernel stack", not "split.kernel_stack") and one line per
    # reason: cgroup v1 lacks a dozen files for one reason, which filled the pane line by line.
    # The reclaim line's figures by its own words ("reclaimable slab"), told apart from the
    # kernel split's ("slab reclaimable" read the same twice).
    unknown = [(key.rsplit(".", 1)[-1].replace("_", " "), why) for key, why in sorted(entry.unknown.items())]
    unknown += [(_RECLAIM_WORDS.get(key, key.replace("_", " ")) + " (reclaim)", why)
                for key, why in sorted(entry.reclaim.unknown.items())]
    by_reason: dict[str, list[str]] = {}
    for label, why in unknown:
        # "memory.stat has no kernel_stack line", "... no percpu line": one reason
        why = re.sub(r"memory\.stat has no \S+ lines?$", "memory.stat has no line for it", why)
        by_reason.setdefault(why, []).append(label)
    for why, labels in by_reason.items():
        t.append(f"unknown: {printable(', '.join(labels))} ({printable(why)})\n", style="dim")
    return t


def oom_text(oom) -> Text:
    """The system's trend and kill order, then the OOM kills of the last ten minutes."""
    t = Text()
    if oom is None:
        return t
    sys_eta = oom.system_time
    if sys_eta.seconds is not None:
        t.append(f"MemAvailable falls {-(sys_eta.slope_bytes_per_s or 0) / 2**20:.1f} MiB/s: zero in "
                 f"{fmt_duration(sys_eta.seconds)}", style="bold yellow")
    else:
        t.append(f"MemAvailable {_b(sys_eta.headroom)}: no time to exhaustion ({printable(sys_eta.reason or '')})")
    first = oom.system_order.first if oom.system_order is not None else None
    if first is not None:
        t.append(f"; the kernel would kill first: {first.candidate.pid} {printable(first.candidate.name, 32)} "
                 f"(oom_score {first.score})")
    t.append("\n")
    if "kernel_log" in oom.unknown:
        t.append(f"victims: {printable(oom.unknown['kernel_log'])}\n", style="dim")
    if not oom.events:
        # "since" the watch started would be untrue once a kill has left the 10-minute list, and
        # "in the last 10 minutes" before the watch is 10 minutes old (a kill just before start)
        young = oom.wall is not None and oom.since_wall is not None and oom.wall - oom.since_wall < EVENTS_KEPT_S
        if young:
            t.append(f"no OOM kill since {fmt_clock(oom.since_wall)}, when memtop started watching (kills before "
                     "it are not seen)\n", style="dim")
        else:
            t.append(f"no OOM kill in the last 10 minutes (watching since {fmt_clock(oom.since_wall)})\n", style="dim")
        return t
    t.append("OOM kills (last 10 minutes):\n", style="bold")
    for e in list(oom.events)[-EVENTS_SHOWN:][::-1]:
        # The reading that saw the kills (they happened since the one before); each victim the
        # kernel log names has its own time and cgroup (a reading can see kills in two cgroups).
        seen = fmt_clock(e.wall_time)
        where = printable(e.cgroup) if e.cgroup else "system"
        t.append(f"seen {seen}: {counted(e.kills, 'kill')} in {where} ({e.scope}): ", style="bold red")
        if e.victims:
            held = []
            for v in e.victims:
                figures = []
                k = v.kernel
                if k is not None:
                    # The kernel log's clock (local_clock) runs beside CLOCK_MONOTONIC but is not
                    # corrected: the kill is between the two readings, whatever it says.
                    since_wall = e.wall_time - (e.time - e.since)
                    killed = min(e.wall_time, max(since_wall, e.wall_time - (e.time - k.usec / 1e6)))
                    memcg = k.oom_memcg or k.task_memcg
                    figures.append(f"killed ~{fmt_clock(killed)}"
                                   + (f" in {printable(memcg)}" if memcg and memcg != e.cgroup else ""))
                if v.kernel is not None and v.kernel.anon_rss is not None:
                    figures.append(f"anon {_b(v.kernel.anon_rss)} file {_b(v.kernel.file_rss)} "
                                   f"shmem {_b(v.kernel.shmem_rss)} (kernel)")
                if v.last is not None:
                    figures.append(f"RSS {_b(v.last.rss)} PSS {_b(v.last.pss)} (last reading)")
                held.append(f"{v.pid} {printable(v.name, 24)} [{printable(v.source)}] " + ", ".join(figures))
            t.append("; ".join(held))
        else:
            t.append(printable(e.victim_reason or "victim unknown"))
        t.append("\n")
    return t


class ContainersTable(DataTable):
    DEFAULT_CSS = """
    ContainersTable { height: auto; max-height: 50%; }
    """


class ContainersTab(TabView):
    TAB_TITLE = "Containers"
    TAB_ID = "containers"
    TAB_ABOUT = ("per container: memory against its limit, the split (anon, file, shmem, kernel), the members' PSS, "
                 "what the kernel can reclaim before OOM and what it cannot, the kill order; OOM foresight and recent kills")
    PARTS = ("containers",)
    FIGURE_SOURCES = (
        ("CONTAINER", "the cgroup's path named by runtime conventions (Docker, containerd/CRI-O with Kubernetes "
                      "kubepods, podman, LXC, machined, systemd units); names from Docker's config.v2.json, "
                      "containers-storage and the kubelet's log directories where root can read them"),
        ("USED", "v2 memory.current; v1 memory.usage_in_bytes"),
        ("LIMIT", "v2 memory.max, v1 hierarchical_memory_limit: the lowest of its own and its ancestors'"),
        ("ANON, FILE, SHMEM", "memory.stat anon, file, shmem (v1 total_rss, total_cache, total_shmem)"),
        ("KERNEL", "v2 memory.stat kernel (slab, stacks, page tables, percpu); v1 memory.kmem.usage_in_bytes"),
        ("PSS", "sum of the members' /proc/PID/smaps_rollup Pss"),
        ("RECLAIM", "what reclaim can free before an OOM kill: clean page cache (inactive+active file minus "
                    "dirty and writeback), reclaimable slab, and anon+shmem the swap room takes"),
        ("TO LIMIT", "least-squares line through memory.current over the last 60 s, extrapolated to the limit "
                     "(needs 4 points and 1 MiB of growth)"),
        ("OOM", "v2 memory.events oom_kill; v1 memory.oom_control oom_kill"),
        ("kill order", "the kernel's oom_badness(): RSS + swap + page tables in pages, plus oom_score_adj "
                       "x totalpages / 1000 (mm/oom_kill.c), from /proc/PID/status and oom_score_adj"),
        ("OOM kills", "a cgroup's oom_kill or /proc/vmstat oom_kill moved between two readings (while this tab is "
                      "shown, at every tick or as often as 200 times the reading's CPU cost allows: the title "
                      "says when; otherwise at the first tick, every 5 minutes, and at the tick after "
                      "/proc/vmstat oom_kill moves); the victim from the kernel log (/dev/kmsg 'Killed "
                      "process'), else the process that vanished"),
    )
    TAB_KEYS = (("↑ ↓", "highlight a container: its details below the OOM watch"),
                ("[ ]", "scroll the OOM watch and the details up / down (the table keeps the arrows)"))
    # The table has the focus (its arrows and PgUp/PgDn move the highlight); the details below it
    # scroll with [ and ], so that a long one (findings, kill order, the reasons of each
    # unknown) is never out of reach (the fresh-eyes report: cut at the footer, End moving the
    # table).
    BINDINGS = [
        Binding("right_square_bracket", "scroll_details(4)", "Details ↓", key_display="]", show=False),
        Binding("left_square_bracket", "scroll_details(-4)", "Details ↑", key_display="[", show=False),
    ]

    DEFAULT_CSS = """
    ContainersTab #containers-title { height: auto; max-height: 2; }
    ContainersTab #containers-detail { height: auto; }
    ContainersTab #containers-oom { height: auto; }
    ContainersTab #containers-body { height: 1fr; }
    """

    def __init__(self, **kw):
        super().__init__(**kw)
        self.view: ContainersView | None = None
        self._keys: list[str] = []
        self._columns: tuple[tuple[str, int], ...] = ()

    def compose(self) -> ComposeResult:
        yield Static("", id="containers-title")
        yield ContainersTable(id="containers-table", cursor_type="row", zebra_stripes=False)
        # The OOM watch first: below the detail, at 80x24 it was off screen and out of reach (the
        # table keeps the keys); the detail's end is what a short terminal cuts.
        with VerticalScroll(id="containers-body"):
            yield Static("", id="containers-oom")
            yield Static("", id="containers-detail")

    def on_mount(self) -> None:
        # One focusable widget: when the tab hides, Textual moves the focus to a focusable
        # sibling of the focused one, which would make this tab active again.
        self.query_one("#containers-body").can_focus = False

    def on_show(self) -> None:
        # The arrows move in the table while the tab is shown.
        self.focus_when_shown(self.query_one(ContainersTable))

    def show_sample(self, sample: Sample) -> None:
        result = sample.result("containers")
        title = self.query_one("#containers-title", Static)
        if result is None:
            if self.replaying:
                title.update(f"Containers: {NOT_RECORDED}")
            elif self.view is None:
                title.update("Containers: reading the cgroups...")
            return
        if result.error:
            title.update(Text(f"Containers: {printable(result.error)}"))
            return
        if result.value is not None and result.value is not self.view:
            self.show_view(result.value, self.spaced_note(result))

    def on_resize(self, event) -> None:
        if self.view is not None:
            self.show_view(self.view)  # the columns may change; the panels' lines are laid out again

    def show_view(self, view: ContainersView, spaced: str = "") -> None:
        """Draw one ContainersView (tests call this with a view read from cgroups they made);
        ``spaced``: when it was read, if the readings are spaced out (:func:`spaced_note`)."""
        self.view = view
        sample, oom = view.containers, view.oom
        title = self.query_one("#containers-title", Static)
        if sample.version is None:
            title.update(Text(f"Containers: no memory cgroup hierarchy: "
                              f"{printable(sample.unknown.get('containers', UNKNOWN))}"))
        else:
            update_static(title, Text(f"{len(sample.containers)} containers, pods, machines and units with processes "
                                      f"(cgroup v{sample.version}); largest first" + (f"; {spaced}" if spaced else ""),
                                      style="bold"))
        table = self.query_one(ContainersTable)
        keys = [entry.container.cgroup for entry in sample.containers]
        highlighted = self._keys[table.cursor_row] if self._keys and 0 <= table.cursor_row < len(self._keys) else None
        columns = columns_for(self.size.width or self.app.size.width)
        if columns != self._columns:  # first, or the terminal crossed NARROW_WIDTH: rows again
            self._columns = columns
            table.clear(columns=True)
            for name, width in columns:
                table.add_column(Text(name), width=width, key=name)
            self._keys = []
        shown = [i for i, (name, _) in enumerate(COLUMNS) if name in dict(columns)]
        if keys != self._keys:
            table.clear()
            for entry in sample.containers:
                eta = oom.cgroup_times.get(entry.memory_path) if oom is not None else None
                row = container_row(entry, eta)
                table.add_row(*(row[i] for i in shown), key=entry.container.cgroup)
            self._keys = keys
            if highlighted in keys:
                table.move_cursor(row=keys.index(highlighted), animate=False)
        else:
            for entry in sample.containers:
                eta = oom.cgroup_times.get(entry.memory_path) if oom is not None else None
                row = container_row(entry, eta)
                for (column, _), i in zip(columns, shown):
                    # Only a cell that changed: each update_cell drops the whole table's
                    # rendered lines (DataTable's caches are keyed by its update count).
                    if table.get_cell(entry.container.cgroup, column) != row[i]:
                        table.update_cell(entry.container.cgroup, column, row[i])
        self._show_detail()
        panel = self.query_one("#containers-oom", Static)
        update_static(panel, flow_text(oom_text(oom), self._text_width(panel)))

    def _text_width(self, panel: Static) -> int:
        """The width a panel's lines are laid out to (broken between figures, never inside one)."""
        return panel.content_region.width or self.size.width or self.app.size.width

    def action_scroll_details(self, lines: int) -> None:
        self.query_one("#containers-body", VerticalScroll).scroll_relative(y=lines, animate=False)

    def selected(self) -> ContainerMemory | None:
        if self.view is None or not self._keys:
            return None
        row = self.query_one(ContainersTable).cursor_row
        if not 0 <= row < len(self._keys):
            return None
        return self.view.containers.by_cgroup(self._keys[row])

    def _show_detail(self) -> None:
        entry = self.selected()
        detail = self.query_one("#containers-detail", Static)
        if entry is None:
            update_static(detail, "")
            return
        update_static(detail, flow_text(detail_text(entry, self.view.oom if self.view is not None else None),
                                        self._text_width(detail)))

    @on(DataTable.RowHighlighted, "#containers-table")
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_detail()
