"""The Page cache tab: what is cached per file (cachestat), who holds it, and whether the page
cache thrashes (/proc/vmstat rates).

Three sources of files, switched with ``o`` (and ``d`` for a directory):
(a) the files the selected process maps or holds open, (b) the files any process maps or holds
open (the system's top cached files), (c) a directory tree the user types, scanned with a
progress bar (``x`` cancels). Each is a part of the Collector (memtop/collect/parts.py:
process_files, system_files, tree; and vmstat for the rates), read while the tab shows it:
(a) and (b) every tick; a scanned tree of up to TREE_LIVE_MAX files is measured again every tick
(cachestat only, no walk), a longer one keeps the figures of its scan (``r`` rescans).
"""

from __future__ import annotations

import os
from pathlib import Path
from dataclasses import dataclass
from typing import Any, Callable

from rich.segment import Segment
from rich.text import Text
from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.geometry import Size
from textual.message import Message
from textual.strip import Strip
from textual.widget import Widget
from textual.widgets import Input, ProgressBar, Static

from memtop.collect.pagecache import (
    PAGE_SIZE,
    THRASH_MIN_REFAULT_BYTES_PER_S,
    THRASH_MIN_REFAULT_SHARE,
    THRASH_WINDOW,
    thrashing_finding,
)
from memtop.collect.parts import TREE_LIVE_MAX
from memtop.format import MiB, UNKNOWN, counted, fmt_bytes, fmt_count, fmt_percent, fmt_rate, sparkline
from memtop.model.pagecache import CachedFile, TreeScanProgress, VmstatRates, VmstatView, one_per_inode, skipped_text
from memtop.model.process import ProcessIdentity
from memtop.model.sample import Sample
from memtop.text import cell, printable
from memtop.tui.tab import NOT_RECORDED, TabView, TextBox
from memtop.tui.widgets import (CachedPlot, CursorTable, clock_ticks, flow_text, picture_kept, series_marker,
                                update_static, within_dot)

SOURCE_PROCESS = "process"
SOURCE_SYSTEM = "system"
SOURCE_TREE = "tree"
SOURCES = (SOURCE_PROCESS, SOURCE_SYSTEM, SOURCE_TREE)
SOURCE_PARTS = {SOURCE_PROCESS: "process_files", SOURCE_SYSTEM: "system_files", SOURCE_TREE: "tree"}
SOURCE_TITLES = {
    SOURCE_PROCESS: "(a) selected process",
    SOURCE_SYSTEM: "(b) all processes",
    SOURCE_TREE: "(c) directory tree",
}


def _page_rate(pages_per_s: float | None) -> str:
    """A /proc/vmstat page counter's rate, in bytes per second."""
    return UNKNOWN if pages_per_s is None else f"{fmt_bytes(pages_per_s * PAGE_SIZE)}/s"


# --- columns -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class FileColumn:
    key: str
    title: str
    width: int  # 0: the rest of the width (the path)
    priority: int  # higher is dropped first when narrow
    value: Callable[[CachedFile], Any]  # sort key; None sorts last
    text: Callable[[CachedFile], str]
    source: str
    align: str = "right"


def _stat(attr: str) -> Callable[[CachedFile], Any]:
    return lambda f: getattr(f.stat, attr)


def _bytes(attr: str) -> Callable[[CachedFile], str]:
    return lambda f: fmt_bytes(getattr(f.stat, attr))


def _holders(f: CachedFile) -> str:
    return fmt_count(len(f.pids)) if f.pids else "-"


FILE_COLUMNS: tuple[FileColumn, ...] = (
    FileColumn("cached", "CACHED", 9, 0, _stat("cached_bytes"), _bytes("cached_bytes"),
               "cachestat(2) nr_cache x page size (mincore(2) count before Linux 6.5)"),
    FileColumn("percent", "%", 4, 1, lambda f: f.stat.cached_fraction,
               lambda f: fmt_percent(f.stat.cached_fraction), "cached bytes / file size (fstat st_size)"),
    FileColumn("size", "SIZE", 9, 2, _stat("size_bytes"), _bytes("size_bytes"), "fstat(2) st_size"),
    FileColumn("dirty", "DIRTY", 9, 3, _stat("dirty_bytes"), _bytes("dirty_bytes"),
               "cachestat(2) nr_dirty (+ nr_writeback in the detail line)"),
    FileColumn("evicted", "R.EVICT", 9, 4, _stat("recently_evicted_bytes"), _bytes("recently_evicted_bytes"),
               "cachestat(2) nr_recently_evicted: pages evicted recently enough to count as a refault if read again"),
    FileColumn("procs", "PROCS", 5, 5, lambda f: len(f.pids), _holders,
               "processes mapping (/proc/PID/maps) or holding (/proc/PID/fd) the file"),
    FileColumn("path", "PATH", 0, 0, lambda f: f.path, lambda f: printable(f.path), "/proc/PID/maps, /proc/PID/fd links, or the scan",
               align="left"),
)
FILE_COLUMNS_BY_KEY = {c.key: c for c in FILE_COLUMNS}


def fit_file_columns(width: int) -> list[FileColumn]:
    chosen = list(FILE_COLUMNS)
    while sum(c.width + 1 for c in chosen if c.width) + max(20, width // 3) > width:
        droppable = [c for c in chosen if c.priority > 0]
        if not droppable:
            break
        chosen.remove(max(droppable, key=lambda c: c.priority))
    return chosen


def sort_files(files, column: FileColumn, reverse: bool) -> list[CachedFile]:
    """Sort by ``column``; unknown (None) always last, ties by path."""
    known = [f for f in files if column.value(f) is not None]
    unknown = [f for f in files if column.value(f) is None]
    known.sort(key=lambda f: f.path)
    known.sort(key=column.value, reverse=reverse)
    unknown.sort(key=lambda f: f.path)
    return known + unknown


# --- messages from workers ------------------------------------------------------------------------
# --- widgets -------------------------------------------------------------------------------------
class FileHeader(Widget):
    COMPONENT_CLASSES = {"file-header--sorted"}
    DEFAULT_CSS = "FileHeader { height: 1; }"

    def __init__(self, table: "FileTable", **kw):
        super().__init__(**kw)
        self.table = table

    def render_line(self, y: int) -> Strip:
        base = self.rich_style
        sorted_style = base + self.get_component_rich_style("file-header--sorted", partial=True)
        segments = []
        for col, width in self.table.layout(self.size.width):
            title = col.title
            current = col.key == self.table.sort_key
            if current:
                title += "▼" if self.table.sort_reverse else "▲"
            segments.append(Segment(cell(title, width, col.align) + " ", sorted_style if current else base))
        return Strip(segments).crop(0, self.size.width)


class FileTable(CursorTable):
    """The list of files, drawn line by line; the cursor follows a path across refreshes."""

    COMPONENT_CLASSES = {"file-table--cursor", "file-table--unknown"}

    class Selected(Message):
        def __init__(self, file: CachedFile | None):
            super().__init__()
            self.file = file

    def __init__(self, **kw):
        super().__init__(**kw)
        self.files: tuple[CachedFile, ...] = ()
        self.rows: list[CachedFile] = []
        self.sort_key = "cached"
        self.sort_reverse = True
        self.cursor_path: str | None = None
        self._cursor_index = 0

    def set_files(self, files: tuple[CachedFile, ...]) -> None:
        self.files = files
        self._rebuild()

    def set_sort(self, key: str, reverse: bool) -> None:
        self.sort_key, self.sort_reverse = key, reverse
        self._rebuild()

    def _rebuild(self) -> None:
        self.rows = sort_files(self.files, FILE_COLUMNS_BY_KEY[self.sort_key], self.sort_reverse)
        self.virtual_size = Size(self.size.width, len(self.rows))
        index = next((i for i, f in enumerate(self.rows) if f.path == self.cursor_path), None)
        self._move_to(index if index is not None else min(self._cursor_index, len(self.rows) - 1), announce=False)

    @property
    def selected(self) -> CachedFile | None:
        if 0 <= self._cursor_index < len(self.rows):
            return self.rows[self._cursor_index]
        return None

    def _move_to(self, index: int, announce: bool = True) -> None:
        if not self.rows:
            self._cursor_index = 0
            self.cursor_path = None
            self.post_message(self.Selected(None))
            self.refresh()
            return
        self._cursor_index = max(0, min(index, len(self.rows) - 1))
        self.cursor_path = self.rows[self._cursor_index].path
        self._scroll_cursor_into_view()
        # Also when the file is the same: its figures are new, the detail line follows them.
        self.post_message(self.Selected(self.rows[self._cursor_index]))
        self.refresh()

    def on_resize(self, event: events.Resize) -> None:
        self.virtual_size = Size(event.size.width, len(self.rows))

    def layout(self, width: int) -> list[tuple[FileColumn, int]]:
        cols = fit_file_columns(width)
        fixed = sum(c.width + 1 for c in cols if c.width)
        return [(c, c.width or max(1, width - fixed - 1)) for c in cols]

    def render_line(self, y: int) -> Strip:
        index = int(self.scroll_offset.y) + y
        width = self.size.width
        if index >= len(self.rows):
            return Strip.blank(width, self.rich_style)
        row = self.rows[index]
        base = self.rich_style
        if index == self._cursor_index:
            base = base + self.get_component_rich_style("file-table--cursor")
        unknown = base + self.get_component_rich_style("file-table--unknown", partial=True)
        segments = []
        for col, w in self.layout(width):
            text = col.text(row)
            segments.append(Segment(cell(text, w, col.align, keep_end=col.align == "left"), unknown if text == "?" else base))
            segments.append(Segment(" ", base))
        return Strip(segments).crop(0, width).extend_cell_length(width, base)


# (vmstat key, label, factor to the unit shown) per chart line
CHARTS = (
    ("disk I/O MiB/s (vmstat bi/bo)", (("pgpgin", "in", 1 / 1024), ("pgpgout", "out", 1 / 1024))),
    ("major faults /s", (("pgmajfault", "majflt", 1.0),)),
    # In MiB/s like disk I/O and the thrashing verdict (refaults against reads), not in pages.
    ("refaults MiB/s", (("workingset_refault_file", "file", PAGE_SIZE / MiB), ("workingset_refault_anon", "anon", PAGE_SIZE / MiB),
                        ("workingset_activate_file", "activate", PAGE_SIZE / MiB))),
)


class RateChart(CachedPlot):
    """One small chart of vmstat rates, drawn when visible. Like the RSS and slab charts, its
    picture is kept while every line's newest rate is within a dot of the one drawn, for a tenth
    of the span shown (20 to 30 s): a plotext rebuild costs ~4 ms on the UI thread, and redrawing
    the three charts at every read was most of the tab's idle cost (issue 20 item 2). The x axis
    has clock times, so a kept picture stays true; the line above the charts has every read."""

    def __init__(self, title: str, lines, **kw):
        super().__init__(**kw)
        self.title = title
        self.lines = lines
        self._drawn_key = None
        self._drawn_at = 0.0
        self.draws = 0  # pictures built (tests count them)

    def show(self, history: tuple[VmstatRates, ...]) -> None:
        if not self.display:
            return
        times = tuple(r.time for r in history)
        ys = [[(r.get(vm_key) or 0.0) * factor for r in history] for vm_key, _label, factor in self.lines]
        latest = tuple(line[-1] for line in ys) if len(history) >= 2 else ()
        size = (self.size.width, self.size.height)
        live = getattr(self.app, "replay", None) is None
        span = times[-1] - times[0] if times else 0.0
        if live and self._drawn_key is not None and picture_kept(times, self._drawn_at):
            drawn_latest, step, drawn_size, drawn_span = self._drawn_key
            # While the history fills (the first minutes), the span shown grows: redrawn when it
            # has doubled, so that the picture's time axis is near the window's (by a tenth, as
            # before, redrew the three charts at nearly every read of the tab's first half-minute:
            # UI 1.2 % of a core then, 0.6 % once full; issue 20 item 2).
            if size == drawn_size and len(latest) == len(drawn_latest) and span <= 2 * drawn_span and all(
                    within_dot(a, b, step) for a, b in zip(latest, drawn_latest)):
                return
        # Rates are never below 0: plotext's own range for an all-zero line was -1..1.
        top = max((y for line in ys for y in line), default=0.0)
        top = top * 1.05 if top > 0 else 1.0
        rows = max(1, self.size.height - 3)  # title, x axis, its labels
        self._drawn_key, self._drawn_at = (latest, top / (4 * rows), size, span), times[-1] if times else 0.0
        self.draws += 1
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        plt.title(self.title)
        if len(history) < 2:
            plt.title(f"{self.title}: waiting for ticks")
            self.replot()
            return
        for i, ((_key, label, _factor), line) in enumerate(zip(self.lines, ys)):
            plt.plot(list(times), line, marker=series_marker(self.app, i), label=label)
        plt.ylim(0, top)
        snapshot = self.app.snapshot
        offset = snapshot.system.wall_time - snapshot.system.monotonic if snapshot is not None else None
        plt.xticks(*clock_ticks(times[0], times[-1], offset, 3))
        plt.yfrequency(3)
        self.replot()


# --- the tab -----------------------------------------------------------------------------------
class PageCacheTab(TabView):
    TAB_TITLE = "Page cache"
    TAB_ID = "pagecache"
    TAB_ABOUT = "what is cached per file, who maps it, thrashing"
    FIGURE_SOURCES = tuple((c.title, c.source) for c in FILE_COLUMNS) + (
        ("?", "unknown: e.g. a file this user cannot write (cachestat EPERM; mincore would claim it all cached)"),
        ("(a) files", "/proc/PID/maps (file-backed mappings) and /proc/PID/fd links of the selected process"),
        ("(b) files", "the same for every process this user may inspect; one row per inode"),
        ("(c) files", "a walk of the directory: no symlinks followed, FIFOs/sockets/devices skipped, pseudo fs not entered"),
        ("disk I/O", "/proc/vmstat pgpgin / pgpgout (KiB, vmstat(8) bi/bo), difference per second"),
        ("major faults", "/proc/vmstat pgmajfault per second"),
        ("refaults", "/proc/vmstat workingset_refault_file/_anon, workingset_activate_file per second, x page size"),
        ("thrashing", "refaults >= 1 MiB/s and >= 25% of pgpgin over the last 5 ticks; files with recently evicted pages"),
    )
    TAB_KEYS = (
        ("o", "next source: selected process, all processes, directory tree"),
        ("d", "scan a directory tree (type its path)"),
        ("x", "cancel a running scan"),
        ("E", "evict every file in the list (confirmation first)"),
        ("r", "rescan the tree"),
        ("s", "sort column"),
        ("↑ ↓ PgUp PgDn", "move the selection"),
    )
    BINDINGS = [
        Binding("o", "next_source", "Source"),
        # Priority: handled when read, so that the path typed right after d goes into the box.
        Binding("d", "ask_tree", "Directory", priority=True),
        Binding("E", "evict_all", "Evict all"),
        Binding("x", "cancel_scan", "Cancel scan"),
        Binding("r", "rescan", "Rescan"),
    ]
    EVICTS = True

    def __init__(self, **kw):
        super().__init__(**kw)
        self.source = SOURCE_SYSTEM
        self.tree_root: str | None = None
        self.vmstat: VmstatView = VmstatView(())
        self.vmstat_error: str | None = None
        self._files: dict[str, tuple[tuple[CachedFile, ...], str]] = {}  # source -> (files, note)
        self._spaced: dict[str, str] = {}  # source -> when a spaced-out reading was taken
        self._scan_id = 0  # which scan the Collector's tree part is asked for
        self._scan_progress: TreeScanProgress | None = None
        self._tree_holders = ""  # the TreeView's holders_note
        self._scanning = False
        self._target: ProcessIdentity | None = None
        self._drawn: tuple = ()

    def compose(self) -> ComposeResult:
        self.table = FileTable(id="pc-table")
        yield Static("", id="pc-source")
        with Horizontal(id="pc-tree-bar"):
            yield TextBox(placeholder="directory to scan (Enter starts, Esc closes)", id="pc-tree-input")
            # A total from the start: without one the bar animates ("indeterminate"), a 15 Hz
            # timer that would run all the time, even with the tab hidden.
            yield ProgressBar(total=1, id="pc-progress", show_eta=False)
        yield FileHeader(self.table, id="pc-header")
        yield self.table
        yield Static("", id="pc-detail")
        with Vertical(id="pc-thrash"):
            yield Static("", id="pc-finding")
            with Horizontal(id="pc-charts"):
                for i, (title, lines) in enumerate(CHARTS):
                    yield RateChart(title, lines, id=f"pc-chart-{i}", classes="pc-chart")

    def on_mount(self) -> None:
        self.query_one("#pc-tree-bar").display = False
        self._show_source()

    def on_show(self) -> None:
        # The tab's keys (o, t, x, r) work when focus is inside it: take it when shown.
        if not self.query_one("#pc-tree-input", Input).has_focus:
            self.focus_when_shown(self.table)

    def on_resize(self, event: events.Resize) -> None:
        # At 80x24 the charts give way to one line of sparklines: the file list needs the rows.
        self.query_one("#pc-charts").display = event.size.height >= 26

    # --- samples ----------------------------------------------------------------------------------
    def parts(self) -> tuple[str, ...]:
        return ("vmstat", SOURCE_PARTS[self.source])

    def show_sample(self, sample: Sample) -> None:
        vmstat, files = sample.result("vmstat"), sample.result(SOURCE_PARTS[self.source])
        drawn = (vmstat, files, self.source)
        if drawn == self._drawn:
            return
        self._drawn = drawn
        keys_before = (bool(self.table.rows), self._scanning)
        if vmstat is not None:
            self.vmstat = vmstat.value or VmstatView(())
            self.vmstat_error = vmstat.error
        elif self.replaying:
            self.vmstat, self.vmstat_error = VmstatView(()), NOT_RECORDED
        if files is not None:
            self._take_files(files)
        elif self.replaying:
            self._files[self.source] = ((), NOT_RECORDED)
        shown = self._files.get(self.source, ((), ""))[0]
        if shown is not self.table.files:
            self.table.set_files(shown)
            self.query_one(FileHeader).refresh()
        if (bool(self.table.rows), self._scanning) != keys_before:
            self.app.refresh_bindings()  # E, x and r act or not
        self._show_source()
        self._show_thrashing()

    def _take_files(self, result) -> None:
        if self.source == SOURCE_TREE:
            if result.key != (self.tree_root, self._scan_id):
                return  # an older scan
            progress = result.progress if result.running else (result.value.progress if result.value else None)
            if progress is not None:
                self._scan_progress = progress
                self.query_one("#pc-progress", ProgressBar).update(total=progress.limit, progress=progress.files_seen)
            if result.value is not None:
                self._files[SOURCE_TREE] = (result.value.files, result.value.error or "")
                self._tree_holders = result.value.holders_note
            elif result.error:
                self._files[SOURCE_TREE] = ((), result.error)
            if self._scanning and not result.running and (result.value is not None or result.error):
                self._scanning = False
                self.query_one("#pc-tree-bar").display = False
            return
        if self.source == SOURCE_PROCESS and result.key != self._target:
            return  # measured for a process that is no longer the selected one
        if result.value is not None:
            self._files[self.source] = (result.value.files, result.value.note)
            self._spaced[self.source] = self.spaced_note(result)
        elif result.error:
            self._files[self.source] = ((), f"cannot list files: {result.error}")

    def show_target(self, target: ProcessIdentity | None) -> None:
        if target != self._target:
            self._target = target
            self._files.pop(SOURCE_PROCESS, None)
            if self.source == SOURCE_PROCESS and self.is_attached:
                self.table.set_files(())
                self._show_source()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """The tab's keys, shown and acting only when they do something: x while a scan runs, r
        once a tree was scanned, E with files listed; none that scans or evicts in replay."""
        if action == "next_source":
            return True
        if self.replaying:
            return False
        if action == "cancel_scan":
            return self._scanning
        if action == "rescan":
            return self.source == SOURCE_TREE and self.tree_root is not None and not self._scanning
        if action == "evict_all":
            return bool(self.table.rows)
        if action == "ask_tree":  # not while a text box has the focus: a path has d's
            return not isinstance(self.screen.focused, Input)
        return super().check_action(action, parameters)

    def can_sort(self) -> bool:
        return True

    # --- source switching ---------------------------------------------------------------------
    def action_next_source(self) -> None:
        index = SOURCES.index(self.source)
        self.set_source(SOURCES[(index + 1) % len(SOURCES)])

    def set_source(self, source: str, ask: bool = False) -> None:
        """Show ``source``'s files. The tree's path box opens, with the focus, only when asked
        (``d``): `o` cycles through the sources and must stay on the table, so that the next `o`
        switches again instead of being typed into the path; a box shown without the focus took
        no typing (the keys went to the app), so `o` shows only the note "type a directory to
        scan (d)"."""
        self.source = source
        self._drawn = ()
        self.table.set_files(self._files.get(source, ((), ""))[0])
        self.query_one(FileHeader).refresh()
        self.query_one("#pc-tree-bar").display = source == SOURCE_TREE and self._scanning
        if source == SOURCE_TREE and self.tree_root is None and ask:
            self.action_ask_tree()
        else:
            self.table.focus()
        self.app.update_wants()
        self._show_source()
        self.app.refresh_bindings()
        if self.app.sample is not None:
            self.show_sample(self.app.sample)

    def _show_source(self) -> None:
        line = Text()
        for s in SOURCES:
            title = SOURCE_TITLES[s]
            if line:
                line.append(" ")
            line.append(f" {title} ", "bold reverse" if s == self.source else "")
        files, note = self._files.get(self.source, ((), ""))
        if self.source == SOURCE_TREE:
            note = self._tree_note()
        elif not note:
            note = "measuring…"
        total = ""
        if files:  # an empty list's note says why (no process, gone, denied, measuring)
            distinct = one_per_inode(f.stat for f in files)  # hard links in a tree counted once
            cached = sum(s.cached_bytes or 0 for s in distinct)
            unknown = sum(1 for f in files if f.stat.cached_bytes is None)
            links = len(files) - len(distinct)
            total = (f"{counted(len(distinct), 'file')}, {fmt_bytes(cached)} cached"
                     + (f" (+{links} hard {'link' if links == 1 else 'links'})" if links else "")
                     + (f", {unknown} unknown (?)" if unknown else "") + "   ")
        line.append("(o switches)", "dim")
        spaced = self._spaced.get(self.source, "") if self.source != SOURCE_TREE else ""
        if spaced:
            line.append(f"   {spaced}", "dim")
        # Text, not markup: the note may hold a directory name or a reason with a path.
        line.append("\n " + total + printable(note))
        update_static(self.query_one("#pc-source", Static), line)

    # --- the tree scan ------------------------------------------------------------------------
    def _tree_note(self) -> str:
        p = self._scan_progress
        if self.tree_root is None:
            return "type a directory to scan (d)"
        error = self._files.get(SOURCE_TREE, ((), ""))[1]
        if error and not self._scanning:  # the root itself could not be scanned: say why
            return f"cannot scan: {error}"
        if p is None:
            return f"{self.tree_root}: starting"
        skipped = skipped_text(p.skipped)
        state = ("cancelled" if p.cancelled else f"stopped at the limit of {p.limit} files" if p.truncated
                 else "done" if p.done else "scanning (x cancels)")
        holders = f"; {self._tree_holders}" if self._tree_holders and p.done else ""
        return f"{self.tree_root}: {state}" + (f"; skipped {skipped}" if skipped else "") + holders

    def action_ask_tree(self) -> None:
        if self.source != SOURCE_TREE:
            self.set_source(SOURCE_TREE, ask=True)
            return
        self.query_one("#pc-tree-bar").display = True
        box = self.query_one("#pc-tree-input", Input)
        if self.tree_root and not box.value:
            box.value = self.tree_root
        self.focus_now(box)  # the path typed right after d goes into the box

    def box_enter(self, box: TextBox) -> None:
        path = os.path.expanduser(box.value.strip())
        if path:
            self.start_scan(path)

    def box_escape(self, box: TextBox) -> None:
        self.key_escape()

    def start_scan(self, path: str) -> None:
        self.tree_root = os.path.abspath(path)
        self._scan_progress = None
        self._tree_holders = ""
        self._scan_id += 1
        self._scanning = True
        self._files.pop(SOURCE_TREE, None)
        if self.source != SOURCE_TREE:
            self.source = SOURCE_TREE
            self.app.update_wants()
        self.table.set_files(())
        bar = self.query_one("#pc-progress", ProgressBar)
        bar.update(total=1, progress=0)
        self.query_one("#pc-tree-bar").display = True
        self.focus_now(self.table)
        self._show_source()
        self.app.refresh_bindings()  # x cancels now
        # The Collector's tree part scans it (memtop/collect/parts.py TreePart), with progress.
        self.app.collector.set_params("tree", root=self.tree_root, scan=self._scan_id)

    def action_cancel_scan(self) -> None:
        if self._scanning:
            self.app.collector.stop("tree")
            self.notify("scan cancelled: the files measured so far are listed")

    def action_rescan(self) -> None:
        if self.source == SOURCE_TREE and self.tree_root:
            self.start_scan(self.tree_root)

    def key_escape(self) -> None:
        bar = self.query_one("#pc-tree-bar")
        if bar.display and not self._scanning:
            bar.display = False
            self.focus_now(self.table)

    # --- detail and thrashing -------------------------------------------------------------------
    @on(FileTable.Selected)
    def _selected(self, message: FileTable.Selected) -> None:
        detail = self.query_one("#pc-detail", Static)
        f = message.file
        if f is None:
            detail.update(" no file selected")
            return
        s = f.stat
        if s.cached_bytes is None:
            figures = f"? unknown: {printable(s.reason)}"
        else:
            figures = (f"cached {fmt_bytes(s.cached_bytes)} of {fmt_bytes(s.size_bytes)} ({fmt_percent(s.cached_fraction)})"
                       f"  dirty {fmt_bytes(s.dirty_bytes)}  writeback {fmt_bytes(s.writeback_bytes)}"
                       f"  evicted {fmt_bytes(s.evicted_bytes)}  recently evicted {fmt_bytes(s.recently_evicted_bytes)}"
                       f"  [{s.method}]")
            if s.reason:
                figures += f"  ({printable(s.reason)})"
        holders = self._holder_names(f.pids)
        update_static(detail, flow_text(f" {printable(s.path)}\n {figures}" + (f"\n held by {holders}" if holders else ""),
                                         detail.content_region.width or self.size.width or 120))

    def _holder_names(self, pids: tuple[int, ...]) -> str:
        if not pids:
            return ""
        snapshot = self.app.snapshot
        names = []
        for pid in pids[:6]:
            view = snapshot.by_pid(pid) if snapshot is not None else None
            names.append(f"{pid} {printable(view.sample.comm)}" if view is not None else str(pid))
        more = f" and {len(pids) - 6} more" if len(pids) > 6 else ""
        return ", ".join(names) + more

    def _show_thrashing(self) -> None:
        history = self.vmstat.history
        finding_box = self.query_one("#pc-finding", Static)
        if self.vmstat_error:
            finding_box.update(Text(f" vmstat unknown: {printable(self.vmstat_error)}"))
            return
        last = history[-1] if history else None
        charts = self.query_one("#pc-charts").display  # else 80x24: every line must fit 80 columns
        rates = "waiting for a second read of /proc/vmstat" if last is None else (
            f"bi {fmt_bytes((last.get('pgpgin') or 0) * 1024)}/s bo {fmt_bytes((last.get('pgpgout') or 0) * 1024)}/s"
            f" majflt {fmt_rate(last.get('pgmajfault'))}"
            # refaults and activations count pages: shown in bytes, as the verdict below them
            f" refault file {_page_rate(last.get('workingset_refault_file'))} anon {_page_rate(last.get('workingset_refault_anon'))}"
            + (f" act {_page_rate(last.get('workingset_activate_file'))}" if charts else ""))
        files = self._files.get(self.source, ((), ""))[0]
        finding = thrashing_finding(self.vmstat.window(THRASH_WINDOW), files, PAGE_SIZE) if history else None
        finding_box.set_class(finding is not None, "-thrashing")
        if finding is not None:
            text = f" {printable(finding.text)}\n {printable(finding.next_step)}"
        else:
            text = f" {rates}\n no thrashing: {self._why_not_thrashing()}"
        if not charts and len(history) >= 2:
            # 80x24: no charts; one line of refaults as a sparkline, and the finding in short.
            series = [(r.get("workingset_refault_file") or 0.0) for r in history]
            state = (f"THRASHING: {self._thrash_summary(short=True)}" if finding
                     else f"no thrashing: {self._thrash_summary(short=True)}")
            text = f" {rates}\n refaults {sparkline(series, 16)} {state}"
        # Broken between figures, never inside one ("... and >=" / "25%)").
        update_static(finding_box, flow_text(text, finding_box.content_region.width or self.size.width or 120))
        for chart in self.query(RateChart):
            chart.show(history)

    def _thrash_summary(self, short: bool = False) -> str:
        """The two numbers the thrashing finding is decided on (memtop/collect/pagecache.py);
        ``short``: the figures alone (80x24, after "refaults" and their sparkline)."""
        window = self.vmstat.window(THRASH_WINDOW)
        refaults = [r.get("workingset_refault_file") for r in window if r.get("workingset_refault_file") is not None]
        reads = [r.get("pgpgin") for r in window if r.get("pgpgin") is not None]
        if not refaults:
            return "no workingset_refault_file counter in /proc/vmstat"
        refault_bps = sum(refaults) / len(refaults) * PAGE_SIZE
        read_bps = sum(reads) / len(reads) * 1024 if reads else 0
        share = f", {fmt_percent(refault_bps / read_bps)} of disk reads" if read_bps else ""
        # The line above shows the last read; this one averages the window the verdict uses.
        if short:  # one 80-column line with the sparkline: the figures alone
            return f"{fmt_bytes(refault_bps)}/s{share}"
        return f"file refaults {fmt_bytes(refault_bps)}/s{share} (mean of the last {len(refaults)} reads)"

    def _why_not_thrashing(self) -> str:
        return (f"{self._thrash_summary()} (thrashing: >= {fmt_bytes(THRASH_MIN_REFAULT_BYTES_PER_S)}/s"
                f" and >= {fmt_percent(THRASH_MIN_REFAULT_SHARE)})")

    # --- sort and evict -------------------------------------------------------------------------
    def choose_sort(self) -> bool:
        from memtop.tui.screens import SortScreen

        def chosen(key: str | None) -> None:
            if key is None:
                return
            reverse = not self.table.sort_reverse if key == self.table.sort_key else key != "path"
            self.table.set_sort(key, reverse)
            self.query_one(FileHeader).refresh()

        self.app.push_screen(SortScreen([(c.key, c.title) for c in FILE_COLUMNS], self.table.sort_key), chosen)
        return True

    def selected_files(self) -> list[Path]:
        """The highlighted file, for the app's `e` (evict, memtop/tui/actions.py).

        A deleted file (shown with " (deleted)") has no name to open: it cannot be evicted by path.
        """
        return self._evictable([self.table.selected] if self.table.selected is not None else [])

    def shown_files(self) -> list[Path]:
        """Every file in the list, for `E` (evict all shown)."""
        return self._evictable(self.table.rows)

    def _evictable(self, rows) -> list[Path]:
        paths = [Path(f.path) for f in rows if not f.path.endswith(" (deleted)")]
        if rows and not paths:
            self.notify("a deleted file has no name to evict by; it leaves the cache when its last holder closes it")
        return paths

    def action_evict_all(self) -> None:
        from memtop.tui import actions

        actions.start_evict(self.app, self.shown_files())
