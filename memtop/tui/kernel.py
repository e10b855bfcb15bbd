"""The Kernel tab: memory that no RSS shows.

Top: meminfo's kernel categories and the remainder none of them explains. Middle: a
slabtop-like table of /proc/slabinfo (sortable, growth per minute, reclaimable flag), totals
reconciled with meminfo Slab / SReclaimable / SUnreclaim, and a chart of the largest caches.
Bottom: sockstat per network namespace, and file descriptors (file-nr, the processes whose fd
count grows, the selected process's fd breakdown).

It renders the Collector's ``kernel`` part (memtop/collect/kernel.py reads it, every tick
while the tab is shown): an immutable KernelView.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from rich.segment import Segment
from rich.table import Table
from rich.text import Text
from textual import events, on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.geometry import Size
from textual.strip import Strip
from textual.widget import Widget
from textual.widgets import Input, Static

from memtop.format import fmt_bytes, fmt_count, fmt_duration, fmt_percent, counted
from memtop.model.kernel import (
    FD_WINDOW_S,
    KERNEL_CATEGORIES,
    UNEXPLAINED_MEANING,
    KernelView,
    NetNamespace,
    SlabRow,
)
from memtop.model.process import ProcessIdentity
from memtop.model.sample import Sample
from memtop.model.snapshot import Snapshot
from memtop.text import cell, printable
from memtop.tui.tab import NOT_RECORDED, TabView, TextBox
from memtop.tui.widgets import (CachedPlot, CursorTable, clock_ticks, picture_kept, series_marker, update_static,
                                within_dot)

# --- the slab table's columns ------------------------------------------------------------------


@dataclass(frozen=True)
class SlabColumn:
    key: str
    title: str
    width: int  # 0: the remaining width (the name)
    value: Callable[[SlabRow], Any]  # sort key; None sorts last
    text: Callable[[SlabRow], str]
    source: str
    align: str = "right"


def _reclaim_text(row: SlabRow) -> str:
    return {True: "R", False: "U", None: "?"}[row.reclaimable]


SLAB_COLUMNS: tuple[SlabColumn, ...] = (
    SlabColumn("name", "CACHE", 0, lambda r: r.cache.name.lower(), lambda r: printable(r.cache.name),
               "/proc/slabinfo name", align="left"),
    SlabColumn("active", "ACTIVE", 8, lambda r: r.cache.active_objs, lambda r: fmt_count(r.cache.active_objs),
               "/proc/slabinfo <active_objs>: objects in use"),
    SlabColumn("objs", "OBJS", 8, lambda r: r.cache.num_objs, lambda r: fmt_count(r.cache.num_objs),
               "/proc/slabinfo <num_objs>: objects allocated in its slabs"),
    SlabColumn("objsize", "SIZE", 6, lambda r: r.cache.objsize, lambda r: str(r.cache.objsize),
               "/proc/slabinfo <objsize>: bytes per object"),
    SlabColumn("total", "TOTAL", 9, lambda r: r.cache.total_bytes, lambda r: fmt_bytes(r.cache.total_bytes),
               "<num_slabs> x <pagesperslab> x page size (slabtop's CACHE SIZE)"),
    SlabColumn("use", "USE", 4, lambda r: r.cache.active_fraction,
               lambda r: "-" if r.cache.num_objs == 0 else fmt_percent(r.cache.active_fraction),
               "<active_objs> / <num_objs>; - for an empty cache (no objects: nothing to use)"),
    SlabColumn("growth", "Δ/min", 9, lambda r: r.growth_bytes_per_min,
               lambda r: fmt_bytes(r.growth_bytes_per_min, signed=True),
               "TOTAL now minus TOTAL up to 60 s ago, per minute (needs 10 s of the tab being visible)"),
    SlabColumn("reclaim", "R", 1, lambda r: r.reclaimable, _reclaim_text,
               "R: reclaimable (counted in SReclaimable), U: not; /sys/kernel/slab/NAME/reclaim_account (root)"),
)
SLAB_COLUMNS_BY_KEY = {c.key: c for c in SLAB_COLUMNS}
NAME_MIN_WIDTH = 14
NAME_MAX_WIDTH = 32  # slabinfo names are up to ~25 characters: a wide pane keeps the figures near them


def sort_slabs(rows, key: str, reverse: bool) -> list[SlabRow]:
    """Sort by a column; unknown (None) values go last, ties by name."""
    column = SLAB_COLUMNS_BY_KEY[key]
    known = [r for r in rows if column.value(r) is not None]
    unknown = [r for r in rows if column.value(r) is None]
    known.sort(key=lambda r: r.cache.name)
    known.sort(key=column.value, reverse=reverse)
    unknown.sort(key=lambda r: r.cache.name)
    return known + unknown


class SlabHeader(Widget):
    """The slab table's title row."""

    COMPONENT_CLASSES = {"slab-header--sorted"}
    DEFAULT_CSS = "SlabHeader { height: 1; }"

    def __init__(self, table: "SlabTable", **kw):
        super().__init__(**kw)
        self.table = table

    def render_line(self, y: int) -> Strip:
        table = self.table
        segments = []
        for col, width in table.layout(self.size.width):
            title = col.title
            sorted_here = col.key == table.sort_key
            if sorted_here:
                title += "▼" if table.sort_reverse else "▲"
            style = self.get_component_rich_style("slab-header--sorted") if sorted_here else self.rich_style
            segments.append(Segment(cell(title, width + (1 if sorted_here and col.width == 1 else 0), col.align) + " ", style))
        return Strip(segments).crop(0, self.size.width)


class SlabTable(CursorTable):
    """Slab caches, drawn line by line; the cursor follows a cache name across refreshes."""

    COMPONENT_CLASSES = {"slab-table--cursor", "slab-table--growing", "slab-table--note"}

    def __init__(self, **kw):
        super().__init__(**kw)
        self.all_rows: tuple[SlabRow, ...] = ()
        self.rows: list[SlabRow] = []
        self.sort_key = "total"
        self.sort_reverse = True
        self.filter_text = ""
        self.note = "waiting for the first read of /proc/slabinfo"
        self.cursor_name: str | None = None
        self._cursor_index = 0

    def set_rows(self, rows: tuple[SlabRow, ...] | None, note: str | None) -> None:
        self.all_rows = rows or ()
        self.note = note or ""
        self._rebuild()

    def set_sort(self, key: str, reverse: bool) -> None:
        self.sort_key, self.sort_reverse = key, reverse
        self._rebuild()

    def set_filter(self, text: str) -> None:
        self.filter_text = text.strip().lower()
        self._rebuild()

    def _rebuild(self) -> None:
        shown = [r for r in self.all_rows if self.filter_text in r.cache.name.lower()]
        self.rows = sort_slabs(shown, self.sort_key, self.sort_reverse)
        self.virtual_size = Size(self.size.width, max(1, len(self.rows)))
        index = next((i for i, r in enumerate(self.rows) if r.cache.name == self.cursor_name), None)
        self._move_to(index if index is not None else min(self._cursor_index, len(self.rows) - 1))

    def _move_to(self, index: int) -> None:
        if not self.rows:
            self._cursor_index, self.cursor_name = 0, None
            self.refresh()
            return
        self._cursor_index = max(0, min(index, len(self.rows) - 1))
        self.cursor_name = self.rows[self._cursor_index].cache.name
        self._scroll_cursor_into_view()
        self.refresh()

    def on_resize(self, event: events.Resize) -> None:
        self.virtual_size = Size(event.size.width, max(1, len(self.rows)))

    def layout(self, width: int) -> list[tuple[SlabColumn, int]]:
        fixed = sum(c.width + 1 for c in SLAB_COLUMNS if c.width)
        return [(c, c.width or min(NAME_MAX_WIDTH, max(NAME_MIN_WIDTH, width - fixed - 1))) for c in SLAB_COLUMNS]

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        base = self.rich_style
        if not self.rows:
            text = self.note if y == 0 else ""
            if y == 0 and self.all_rows and self.filter_text:
                text = f"no cache name contains '{self.filter_text}'"
            return Strip([Segment(text, base + self.get_component_rich_style("slab-table--note"))]).crop(0, width).extend_cell_length(width, base)
        index = int(self.scroll_offset.y) + y
        if index >= len(self.rows):
            return Strip.blank(width, base)
        row = self.rows[index]
        if index == self._cursor_index:
            base = base + self.get_component_rich_style("slab-table--cursor")
        growing = base + self.get_component_rich_style("slab-table--growing")
        segments = []
        for col, w in self.layout(width):
            style = growing if col.key == "growth" and (row.growth_bytes_per_min or 0) > 0 else base
            segments.append(Segment(cell(col.text(row), w, col.align), style))
            segments.append(Segment(" ", base))
        return Strip(segments).crop(0, width).extend_cell_length(width, base)


class SlabChart(CachedPlot):
    """Total bytes of the largest caches over time, against clock time. Redrawn only when its
    picture would change much: a plotext rebuild costs 20-40 ms on the UI thread (most of the
    tab's idle cost when it was redrawn at every read; issue 20 item 2)."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self._drawn_key = None
        self._drawn_at = 0.0
        self.draws = 0  # pictures built (tests count them)

    def show(self, view: KernelView | None) -> None:
        # Like the Processes tab's RSS chart: redrawn when the caches charted change, or one of
        # them moves by a step the chart can show (a braille dot: the drawn range / (4 x plot
        # rows)), else when time has moved by a tenth of the span shown (20 to 30 s), so that the
        # clock axis keeps up. The table above has every read's exact figures.
        times = view.slab_history_times if view else ()
        state = "none" if view is None or view.slabs is None else ("wait" if len(times) < 2 else "plot")
        names = tuple(view.slab_history) if state == "plot" else ()
        latest = tuple(v[-1] if v else None for v in view.slab_history.values()) if state == "plot" else ()
        now = times[-1] if times else 0.0
        live = getattr(self.app, "replay", None) is None
        size = (self.size.width, self.size.height)
        if live and self._drawn_key is not None and picture_kept(times, self._drawn_at):
            drawn_state, drawn_names, drawn_latest, step, drawn_size = self._drawn_key
            if (state, names, size) == (drawn_state, drawn_names, drawn_size) and all(
                    within_dot(a, b, step) for a, b in zip(latest, drawn_latest)):
                return
        known = [x for v in view.slab_history.values() for x in v if x is not None] if state == "plot" else []
        low, high = (min(known), max(known)) if known else (0, 0)
        high = max(high, low + 2**20)
        rows = max(1, self.size.height - 4)  # title, x axis, its labels, the legend
        self._drawn_key = (state, names, latest, (high - low) / (4 * rows), size)
        self._drawn_at = now
        self.draws += 1
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        if state == "none":
            plt.title("largest caches: needs /proc/slabinfo")
        elif state == "wait":
            plt.title("largest caches: waiting for a second read")
        else:
            # Clock times on the x axis, not "seconds ago": a picture kept for a few reads stays
            # true; it only lacks the newest points, which are within a dot of it.
            snapshot = getattr(self.app, "snapshot", None)
            offset = snapshot.system.wall_time - snapshot.system.monotonic if snapshot is not None else None
            for i, (name, values) in enumerate(view.slab_history.items()):
                points = [(t, v / 2**20) for t, v in zip(times, values) if v is not None]
                plt.plot([p[0] for p in points], [p[1] for p in points], marker=series_marker(self.app, i),
                         label=printable(name, 16))
            plt.title(f"largest caches, MiB, last {fmt_duration(now - times[0])}")
            plt.xticks(*clock_ticks(times[0], now, offset, 3))
            plt.yfrequency(3)
        self.replot()


# --- the text panels ---------------------------------------------------------------------------


def pack(items: list[tuple[str, str]], width: int) -> Text:
    """Join (text, style) items with two spaces, breaking lines only between items."""
    text = Text()
    used = 0
    for item, style in items:
        if used and used + 2 + len(item) > width:
            text.append("\n")
            used = 0
        elif used:
            text.append("  ")
            used += 2
        text.append(item, style=style)
        used += len(item)
    return text


def categories_text(view: KernelView, width: int = 200) -> Text:
    items = []
    for c in view.categories:
        name = "unexplained" if c.key == "Unexplained" else c.key
        items.append((f"{name} {fmt_bytes(c.bytes)}", "bold" if c.key in ("SUnreclaim", "Unexplained") else ""))
    return pack(items, width)


def slab_title(view: KernelView, table: SlabTable | None = None) -> Text:
    """The slab table's two lines above it; with a filter typed, how many caches it keeps."""
    title = _slab_title(view)
    if table is not None and table.filter_text and view.slabs is not None:
        title = f"filter '{printable(table.filter_text)}': {len(table.rows)} of {len(view.slabs)} caches · " + title
    return Text(title)  # Text, not str: no markup


def _slab_title(view: KernelView) -> str:
    slab = view.meminfo.get("Slab")
    if view.slabs is None:
        return f"{printable(view.slab_reason)}\nmeminfo Slab {fmt_bytes(slab)} = SReclaimable + SUnreclaim (above)"
    total = sum(r.cache.total_bytes for r in view.slabs)
    known = all(r.reclaimable is not None for r in view.slabs)
    reclaim = sum(r.cache.total_bytes for r in view.slabs if r.reclaimable)
    rec = f", reclaimable {fmt_bytes(reclaim)} (SReclaimable {fmt_bytes(view.meminfo.get('SReclaimable'))})" if known else ""
    outside = f"; outside caches {fmt_bytes(slab - total)} (large kmallocs)" if slab is not None else ""
    return f"{len(view.slabs)} caches hold {fmt_bytes(total)}{rec}\nof meminfo Slab {fmt_bytes(slab)}{outside}"


SOCKET_COLUMNS = ("NET NS", "PROCS", "SOCK", "TCP in/or/tw/al", "TCP mem", "UDP in", "UDP mem", "TCP6", "UDP6", "e.g.")


def sockets_table(view: KernelView, width: int = 200) -> Table:
    # One space between columns (not two): at 80 columns every figure fits whole.
    table = Table(box=None, padding=(0, 1, 0, 0), pad_edge=False, show_header=True, header_style="bold", expand=False)
    for i, title in enumerate(SOCKET_COLUMNS):
        last = i == len(SOCKET_COLUMNS) - 1
        table.add_column(title, justify="left" if i in (0, len(SOCKET_COLUMNS) - 1) else "right", no_wrap=True,
                         # the byte columns hold "99.9 MiB" whole (at 80 columns "1.47 M…" was cut)
                         overflow="ellipsis", min_width=None if last else (11 if i == 0 else max(len(title), 8 if "mem" in title else 0)),
                         max_width=max(4, width - 80) if last else None)
    for ns in view.namespaces:
        table.add_row(*namespace_cells(ns))
    if view.namespaces_unreadable:
        table.caption = f"namespace of {counted(view.namespaces_unreadable, 'process', 'processes')} unreadable"
    return table


def namespace_cells(ns: NetNamespace) -> list:
    name = f"{'*' if ns.own else ''}{ns.inode if ns.inode is not None else '?'}"
    procs = str(len(ns.pids)) if ns.pids else "?"
    s = ns.sockstat
    if s is None:
        return [name, procs, "?", Text(printable(ns.reason or "?", 40)), "", "", "", "", "", Text(printable(ns.example))]
    tcp, udp, tcp6, udp6 = (s.protocol(p) for p in ("TCP", "UDP", "TCP6", "UDP6"))
    def count(p, key):
        return fmt_count(p.get(key)) if p is not None else "?"
    tcp_counts = "/".join(count(tcp, k) for k in ("inuse", "orphan", "tw", "alloc"))
    return [name, procs, fmt_count(s.sockets_used), tcp_counts, fmt_bytes(tcp.mem_bytes if tcp else None),
            count(udp, "inuse"), fmt_bytes(udp.mem_bytes if udp else None), count(tcp6, "inuse"), count(udp6, "inuse"),
            Text(printable(ns.example))]


def fds_text(view: KernelView, target: ProcessIdentity | None, snapshot: Snapshot | None, width: int = 200) -> Text:
    nr = view.file_nr
    items = [(f"file handles {fmt_count(nr.allocated)} of {fmt_count(nr.maximum)}" if nr is not None
              else f"file handles ? ({printable(view.file_nr_reason)})", ""),
             (f"fd growth/min over {FD_WINDOW_S:.0f} s:" + ("" if view.growers else " none"), "")]
    for g in view.growers[:5]:
        items.append((f"{g.view.pid} {printable(g.view.sample.comm, 12)} {g.growth.per_min:+.0f}", "bold" if g.finding else ""))
    text = Text()
    first = pack(items, width)
    text.append_text(first.split("\n")[0] if "\n" in first.plain else first)
    text.append("\n")
    leaks = [g for g in view.growers if g.finding is not None]
    if leaks:
        g = leaks[0]
        text.append(f"LEAK? PID {g.view.pid} {printable(g.view.sample.comm, 16)}: fds {g.growth.first} → {g.growth.last} in "
                    f"{g.growth.span_s:.0f} s ({g.growth.per_min:+.0f}/min, steady: R² {g.growth.r2:.2f})", style="bold")
        if len(leaks) > 1:
            text.append(f"  (+{len(leaks) - 1} more)")
    else:
        text.append("no process's fd count grows steadily", style="dim")
    text.append("\n")
    if target is None:
        text.append("select a process (Processes tab) for its fd breakdown", style="dim")
    elif view.target_pid != target.pid:
        text.append(f"PID {target.pid}: reading its fd table at the next refresh", style="dim")
    elif view.fd_breakdown is None:
        text.append(f"PID {target.pid} fds: ? ({printable(view.fd_breakdown_reason)})")
    else:
        b = view.fd_breakdown
        current = snapshot.by_pid(b.pid) if snapshot else None
        comm = current.sample.comm if current else "?"
        text.append(f"PID {b.pid} {printable(comm, 16)}: {b.total} fds = sockets {b.sockets}  pipes {b.pipes}  files {b.files}"
                    f"  anon {b.anon_inodes}  other {b.other}")
        if b.anon_kinds:
            text.append(" (" + ", ".join(f"{k} {n}" for k, n in list(b.anon_kinds.items())[:3]) + ")")
        if b.deleted_files:
            text.append(f"  deleted-but-open {b.deleted_files}", style="bold")
        if b.socket_states:
            # On the same line (the panel is 3 lines): CLOSE_WAIT first, the one that is a leak.
            waiting = b.socket_states.get("CLOSE_WAIT", 0)
            if waiting:
                text.append(f"  CLOSE_WAIT {waiting} (the peers closed, this process never did: each keeps an fd "
                            "and its buffers)", style="bold")
            rest = [f"{k} {n}" for k, n in b.socket_states.items() if k != "CLOSE_WAIT"]
            if rest:
                text.append("  inet " + " ".join(rest))
        elif b.sockets and b.socket_states_reason:
            text.append(f"  socket states: ? ({printable(b.socket_states_reason)})", style="dim")
    text.no_wrap = True
    text.overflow = "ellipsis"
    return text


# --- the tab -------------------------------------------------------------------------------------


class KernelTab(TabView):
    TAB_TITLE = "Kernel"
    TAB_ID = "kernel"
    TAB_ABOUT = "slab caches, kernel categories, socket buffers, fd growth"
    FIGURE_SOURCES = (
        *((key, f"/proc/meminfo {key}: {meaning}") for key, meaning in KERNEL_CATEGORIES),
        ("unexplained", UNEXPLAINED_MEANING),
        *((f"slab {c.title}", c.source) for c in SLAB_COLUMNS),
        ("caches hold", "sum of TOTAL over /proc/slabinfo; reclaimable: sum over caches marked R"),
        ("outside caches", "meminfo Slab minus the caches' total: kmalloc() above 2 pages goes straight to the page "
                           "allocator and is counted in SUnreclaim, with no slabinfo line"),
        ("chart", "TOTAL of the 5 largest caches at each refresh while this tab is visible"),
        ("NET NS", "inode of /proc/PID/ns/net (ls -Li); * marks memtop's own, whose figures /proc/net/sockstat shows"),
        ("PROCS, e.g.", "processes in the namespace (grouped by that inode), and its lowest PID"),
        ("SOCK", "/proc/PID/net/sockstat 'sockets: used' (per namespace)"),
        ("TCP in/or/tw/al", "sockstat TCP inuse, orphan, tw, alloc: inuse and tw are per namespace; orphan and alloc "
                            "are system-wide (net/ipv4/proc.c)"),
        ("TCP mem, UDP mem", "sockstat mem (pages) x page size: socket buffers, system-wide (the same in every namespace)"),
        ("UDP in, TCP6, UDP6", "sockstat UDP inuse, sockstat6 TCP6 / UDP6 inuse (per namespace)"),
        ("file handles", "/proc/sys/fs/file-nr: allocated file handles of maximum"),
        ("fd growth", "fd count of every process every tick (stat(/proc/PID/fd).st_size), least-squares slope over "
                      "the last 60 s, per minute (needs 10 s of history)"),
        ("LEAK?", "the fd count grew by at least 10 over at least 55 s, a straight line fits it (R² ≥ 0.8), it "
                  "fell at no more than 40 % of ticks, and the process is more than a minute old"),
        ("fd breakdown", "readlink of every /proc/PID/fd/N of the selected process: socket:[..], pipe:[..], "
                         "anon_inode:.., paths (files, devices, memfd), other"),
    )
    TAB_KEYS = (
        ("↑ ↓ PgUp PgDn", "move in the slab table"),
        ("s", "sort the slab table"),
        ("/", "filter caches by name"),
    )

    def __init__(self, **kw):
        super().__init__(**kw)
        self.view: KernelView | None = None

    def compose(self) -> ComposeResult:
        self.table = SlabTable(id="slab-table")
        yield Static("", id="kernel-categories")
        with Horizontal(id="kernel-slab-area"):
            with Vertical(id="kernel-slab-pane"):
                yield Static("", id="kernel-slab-title")
                yield SlabHeader(self.table, id="slab-header")
                yield self.table
                yield TextBox(placeholder="filter caches by name (Enter keeps it, Esc clears)", id="slab-filter")
            yield SlabChart(id="slab-chart")
        yield Static("", id="kernel-sockets")
        yield Static("", id="kernel-fds")

    def on_mount(self) -> None:
        self.query_one("#slab-filter").display = False

    def on_show(self) -> None:
        # The arrows move in the slab table when the tab is shown (focus is lost when tabs switch).
        if not self.query_one("#slab-filter", Input).has_focus:
            self.focus_when_shown(self.table)

    def on_resize(self, event: events.Resize) -> None:
        # The chart needs room beside a full-width table: only on wide terminals.
        self.set_class(event.size.width < 110, "-narrow")

    # --- data flow -----------------------------------------------------------------------
    PARTS = ("kernel",)

    def show_sample(self, sample: Sample) -> None:
        result = sample.result("kernel")
        if result is None or result.value is None:
            if result is not None and result.error:
                self.query_one("#kernel-categories", Static).update(Text(f"Kernel: {printable(result.error)}"))
            elif self.replaying:
                self.query_one("#kernel-categories", Static).update(f"Kernel: {NOT_RECORDED}")
            return
        if result.value is not self.view:
            self.show_view(result.value)

    def show_target(self, target: ProcessIdentity | None) -> None:
        if self.view is not None:
            self._show_fds()

    def show_view(self, view: KernelView) -> None:
        """Draw one KernelView (the snapshot test calls this with fixed data)."""
        had_slabs = self.can_filter()
        self.view = view
        if self.can_filter() != had_slabs:
            self.app.refresh_bindings()  # / and s act once there is a slab table
        width = self.size.width or 200
        update_static(self.query_one("#kernel-categories", Static), categories_text(view, width))
        self.table.set_rows(view.slabs, None if view.slabs is not None else
                            "run memtop as root to list the slab caches; meminfo's totals are above")
        self._show_slab_title()
        self.query_one("#kernel-slab-title").set_class(view.slabs is None, "-unknown")
        self.query_one(SlabHeader).refresh()
        update_static(self.query_one("#kernel-sockets", Static), sockets_table(view, width))
        self._show_fds()
        if not self.has_class("-narrow"):
            self.query_one(SlabChart).show(view)

    def _show_slab_title(self) -> None:
        if self.view is not None:
            update_static(self.query_one("#kernel-slab-title", Static), slab_title(self.view, self.table))

    def _show_fds(self) -> None:
        update_static(self.query_one("#kernel-fds", Static), fds_text(self.view, self.app.target, self.app.snapshot,
                                                                       self.size.width or 200))

    # --- filter and sort -----------------------------------------------------------------
    def can_filter(self) -> bool:
        """Only the slab table filters: not before it is read, nor without root (no slabinfo)."""
        return self.view is not None and self.view.slabs is not None

    def can_sort(self) -> bool:
        return self.can_filter()

    def start_filter(self) -> bool:
        if not self.can_filter():
            return False
        box = self.query_one("#slab-filter", Input)
        box.display = True
        self.focus_now(box)
        return True

    @on(Input.Changed, "#slab-filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.table.set_filter(event.value)
        self._show_slab_title()

    def box_enter(self, box: TextBox) -> None:
        self.table.set_filter(box.value)  # now: Input.Changed comes later
        self._show_slab_title()
        if not box.value:
            box.display = False
        self.focus_now(self.table)

    def box_escape(self, box: TextBox) -> None:
        self.key_escape()

    def key_escape(self) -> None:
        box = self.query_one("#slab-filter", Input)
        if box.display:
            box.value = ""
            box.display = False
            self.table.set_filter("")
            self._show_slab_title()
            self.focus_now(self.table)

    def choose_sort(self) -> bool:
        if not self.can_sort():
            return False
        from memtop.tui.screens import SortScreen

        def chosen(key: str | None) -> None:
            if key is None:
                return
            reverse = not self.table.sort_reverse if key == self.table.sort_key else key != "name"
            self.table.set_sort(key, reverse)
            self.query_one(SlabHeader).refresh()

        self.app.push_screen(SortScreen([(c.key, c.title) for c in SLAB_COLUMNS], self.table.sort_key), chosen)
        return True
