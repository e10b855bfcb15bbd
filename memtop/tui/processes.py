"""The Processes tab: every process, drawn line by line (Textual's Line API), and the selected
process's RSS history as a chart.

Only the rows on screen are rendered (``render_line``); the table's data is rebuilt from each
snapshot, which costs far less than updating DataTable cells (reference/facts.md).
"""

from __future__ import annotations

import time
from bisect import bisect_left, insort
from functools import lru_cache
from operator import itemgetter
from typing import Any, Mapping

from rich.segment import Segment
from rich.style import Style
from textual import events, on
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.strip import Strip
from textual.widget import Widget
from textual.widgets import Input, Static

from memtop.format import fmt_bytes, fmt_duration, sparkline
from memtop.model.process import History, ProcessView
from memtop.model.sample import Sample
from memtop.model.snapshot import Snapshot
from memtop.text import cell, cut, printable
from memtop.tui.columns import COLUMNS, COLUMNS_BY_KEY, Column, fit_columns, trend_sentence, trend_text
from memtop.tui.tab import TabView, TextBox
from memtop.tui.widgets import CachedPlot, CursorTable, clock_ticks, picture_kept, within_dot


def short_command(command: str) -> str:
    """The program's base name and its arguments: on a narrow screen "/work/main/.venv/bin/python
    -m pytest" says less than "python -m pytest"."""
    program, sep, args = command.partition(" ")
    if program.startswith("[") or "/" not in program:
        return command
    return program.rsplit("/", 1)[1] + sep + args


def matches(view: ProcessView, needle: str, container=None) -> bool:
    """Filter: a PID (exact), a user name (exact), or a substring of the command line or of the
    container's label (its kind, name, pod, unit: "docker", a container name, a pod)."""
    if not needle:
        return True
    s = view.sample
    label = container.label if container is not None else ""
    if needle.isdigit():
        return s.pid == int(needle) or needle in s.name or needle in label
    needle_l = needle.lower()
    return needle_l == (s.user or "").lower() or needle_l in s.name.lower() or needle_l in label.lower()


def _row_totals(view: ProcessView) -> tuple:
    """What the totals line sums for one row: (RSS, PSS, USS, swap), then 1 for each known."""
    s = view.sample
    r = s.rollup
    values = (s.rss_bytes, r.pss if r is not None else None, r.uss if r is not None else None, s.swap_bytes)
    return tuple(v or 0 for v in values) + tuple(int(v is not None) for v in values)


def _sum_totals(views) -> tuple:
    """_row_totals summed over ``views`` (comprehensions: a call per row costs twice as much)."""
    samples = [v.sample for v in views]
    rollups = [s.rollup for s in samples]
    columns = (
        [x for x in (s.rss_bytes for s in samples) if x is not None],
        [x for x in (r.pss for r in rollups if r is not None) if x is not None],
        [x for x in (r.uss for r in rollups if r is not None) if x is not None],
        [x for x in (s.swap_bytes for s in samples) if x is not None],
    )
    return tuple(sum(c) for c in columns) + tuple(len(c) for c in columns)


class SortedViews:
    """The rows in order, and their totals, kept from one tick to the next.

    Every tick the table is sorted over every process; most of them are idle and their views are
    the very objects of the last tick (the Sampler keeps them). So when the same processes come
    in the same order with the same column, only the views that changed are taken out and put
    back (bisect), and the totals move by their difference; otherwise everything is sorted and
    summed again. (At 3,000 processes the full sort and sums cost ~2 ms of the UI thread a tick,
    more with cold caches: issue 20.)
    """

    def __init__(self) -> None:
        self._how: tuple | None = None  # (column, reverse, containers) of the order kept
        self._views: tuple = ()  # the views it was made from, in their order
        self._known: list = []  # (value, sign * pid, view), ascending
        self._unknown: list = []  # (pid, view) of the views whose value is None, ascending
        self.totals: tuple = (0,) * 8  # _row_totals summed over the rows

    def _changed(self, views, how) -> list[int] | None:
        """Where ``views`` differs from the last input (indexes), or None when it must be sorted
        anew: another column, order or containers, processes come or gone, many changes."""
        prev = self._views
        if self._how is None or len(views) != len(prev) or any(a is not b for a, b in zip(how, self._how)):
            return None
        changed = [i for i, (a, b) in enumerate(zip(views, prev)) if a is not b]
        if len(changed) > len(views) // 8 + 8:
            return None
        for i in changed:
            if views[i].sample.identity != prev[i].sample.identity:
                return None
        return changed

    def sort(self, views, column: Column, reverse: bool, containers=None) -> list[ProcessView]:
        views = tuple(views)
        value = column.value
        if column.with_container:
            of = (containers or {}).get
            value = lambda v: column.value(v, of(v.pid))  # noqa: E731
        sign = -1 if reverse else 1
        how = (column, reverse, containers)
        changed = self._changed(views, how)
        if changed is not None and not self._move(changed, views, value, sign):
            changed = None
        if changed is None:
            known, unknown = [], []
            for v in views:
                x = value(v)
                pid = v.sample.identity.pid
                if x is None:
                    unknown.append((pid, v))
                else:
                    known.append((x, sign * pid, v))
            known.sort(key=_first_two)
            unknown.sort(key=_first)
            self._known, self._unknown = known, unknown
            self.totals = _sum_totals(views)
        self._how, self._views = how, views
        # Keys are unique (the PID is in them): sorted in reverse is the ascending order reversed.
        ordered = reversed(self._known) if reverse else self._known
        return [k[2] for k in ordered] + [u[1] for u in self._unknown]

    def _move(self, changed: list[int], views: tuple, value, sign: int) -> bool:
        """Take the changed views' old entries out and put the new ones in; False if an old entry
        is not where its value says (then the caller sorts anew)."""
        known, unknown, prev = self._known, self._unknown, self._views
        totals = list(self.totals)
        for i in changed:
            old, new = prev[i], views[i]
            pid = old.sample.identity.pid
            x = value(old)
            if x is None:
                at = bisect_left(unknown, pid, key=_first)
                if at == len(unknown) or unknown[at][1] is not old:
                    return False
                del unknown[at]
            else:
                at = bisect_left(known, (x, sign * pid), key=_first_two)
                if at == len(known) or known[at][2] is not old:
                    return False
                del known[at]
            y = value(new)
            if y is None:
                insort(unknown, (pid, new), key=_first)
            else:
                insort(known, (y, sign * pid, new), key=_first_two)
            for j, (a, b) in enumerate(zip(_row_totals(old), _row_totals(new))):
                totals[j] += b - a
        self.totals = tuple(totals)
        return True


_first_two = itemgetter(0, 1)
_first = itemgetter(0)




# The detail's second line at its widest (every figure "1023 MiB" wide) and its longest note.
_SECOND_LINE_WIDEST = len(" RSS 99.9 MiB  PSS 99.9 MiB  USS 99.9 MiB  Private_Dirty 99.9 MiB  LazyFree 99.9 MiB")
_NOTE_WIDEST = len("  (smaps_rollup, 99s old, unchanged)")  # 120 columns hold both

@lru_cache(maxsize=16)
def _layout(width: int) -> tuple[tuple[Column, int], ...]:
    """The columns that fit and their widths; the command takes what is left."""
    cols = fit_columns(width)
    fixed = sum(c.width + 1 for c in cols if c.width)
    return tuple((c, c.width or max(1, width - fixed - 1)) for c in cols)


class ColumnHeader(Widget):
    """The table's title row, aligned with the rows below it."""

    COMPONENT_CLASSES = {"column-header--sorted"}
    DEFAULT_CSS = "ColumnHeader { height: 1; }"

    def __init__(self, table: "ProcessTable", **kw):
        super().__init__(**kw)
        self.table = table

    def render_line(self, y: int) -> Strip:
        table = self.table
        base = self.rich_style
        sorted_style = base + self.get_component_rich_style("column-header--sorted", partial=True)
        segments = []
        for col, width in table.layout(self.size.width):
            title = col.title
            if col.key == table.sort_key:
                title = title + ("▼" if table.sort_reverse else "▲")
            segments.append(Segment(cell(title, width, col.align) + " ", sorted_style if col.key == table.sort_key else base))
        return Strip(segments).crop(0, self.size.width)


class ProcessTable(CursorTable):
    """The process list. The cursor follows a PID, so it stays on the same process across ticks."""

    COMPONENT_CLASSES = {"process-table--cursor", "process-table--unknown", "process-table--stale", "process-table--kernel"}

    cursor_pid: reactive[int | None] = reactive(None, always_update=True, repaint=False)
    SLACK_ROWS = 16

    class Selected(Message):
        """The cursor moved to another process."""

        def __init__(self, view: ProcessView | None):
            super().__init__()
            self.view = view

    def __init__(self, **kw):
        super().__init__(**kw)
        self.rows: list[ProcessView] = []
        self.snapshot: Snapshot | None = None  # the one shown: its views, and their histories' window
        self.sort_key = "rss"
        self.sort_reverse = True
        self.filter_text = ""
        self.containers: Mapping[int, Any] = {}  # PID -> ContainerId (the container_names part)
        self._cursor_index = 0
        # The process selected when a filter hid it: selected again when a filter shows it (or the
        # filter is cleared), unless the user chose another meanwhile (_move_to outside _rebuild).
        self._home_pid: int | None = None
        self._rebuilding = False
        # What each on-screen line shows, by row index: a tick redraws only the lines whose
        # content changed (on an idle machine, few), not the whole table.
        self._drawn: dict[int, tuple] = {}
        self._drawn_width = 0
        self._sorted = SortedViews()

    # --- data -----------------------------------------------------------------
    @property
    def totals(self) -> tuple:
        """The rows' (RSS, PSS, USS, swap) sums, then how many rows know each."""
        return self._sorted.totals

    @property
    def all_views(self) -> tuple[ProcessView, ...]:
        return self.snapshot.processes if self.snapshot is not None else ()

    def set_snapshot(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot
        self._rebuild()

    def set_sort(self, key: str, reverse: bool) -> None:
        self.sort_key, self.sort_reverse = key, reverse
        self._rebuild()

    def set_filter(self, text: str) -> None:
        self.filter_text = text.strip()
        self._rebuild()

    def set_containers(self, containers: Mapping[int, Any]) -> None:
        self.containers = containers
        self._rebuild()

    def _rebuild(self) -> None:
        needle = self.filter_text
        of = self.containers.get
        shown = [v for v in self.all_views if matches(v, needle, of(v.pid))] if needle else self.all_views
        self.rows = self._sorted.sort(shown, COLUMNS_BY_KEY[self.sort_key], self.sort_reverse, self.containers)
        self._fit_virtual_size()
        cursor = self.cursor_pid
        home = next((i for i, v in enumerate(self.rows) if v.pid == self._home_pid), None)
        index = next((i for i, v in enumerate(self.rows) if v.sample.identity.pid == cursor), None)
        self._rebuilding = True
        try:
            if home is not None:
                # The process a filter hid is shown again: select it again.
                self._home_pid = None
                self._move_to(home)
            elif index is not None:
                self._cursor_index = index
                self._scroll_cursor_into_view()
            else:
                # The selected process went away, or a filter hid it (remember it): stay at the
                # same place.
                if needle and cursor is not None and self._home_pid is None:
                    self._home_pid = cursor
                self._move_to(min(self._cursor_index, len(self.rows) - 1))
        finally:
            self._rebuilding = False
        if not needle:
            self._home_pid = None  # no filter: not coming back (the process exited)
        self._refresh_changed_lines()

    def _line(self, index: int, width: int) -> tuple:
        """What line ``index`` shows at ``width``: (texts, stale, kernel thread, under the cursor)."""
        if index >= len(self.rows):
            return ()
        view = self.rows[index]
        texts = []
        for col, w in self.layout(width):
            if col.with_history:
                text = col.text(view, self.snapshot.history(view))
            elif col.with_container:
                text = col.text(view, self.containers.get(view.pid))
            else:
                text = col.text(view)
            if col.key == "command" and len(text) > w:
                text = short_command(text)
            texts.append(text)
        return (tuple(texts), not view.rollup_current, view.sample.kernel_thread, index == self._cursor_index)

    def _refresh_changed_lines(self) -> None:
        top, width = int(self.scroll_offset.y), self.size.width
        if width != self._drawn_width:
            self._drawn, self._drawn_width = {}, width
        drawn = {}
        for index in range(top, top + self.size.height):
            line = self._line(index, width)
            drawn[index] = line
            if self._drawn.get(index) != line:
                self.refresh_line(index)
        self._drawn = drawn

    def refresh(self, *regions, **kw):
        if not regions:  # a whole repaint (scroll, resize, cursor move): forget what was drawn
            self._drawn = {}
        return super().refresh(*regions, **kw)

    @property
    def selected_view(self) -> ProcessView | None:
        if 0 <= self._cursor_index < len(self.rows):
            return self.rows[self._cursor_index]
        return None

    def visible_pids(self) -> frozenset[int]:
        top = int(self.scroll_offset.y)
        return frozenset(v.pid for v in self.rows[top : top + self.size.height])

    # --- cursor ---------------------------------------------------------------
    def keep_selection(self) -> None:
        """The process under the cursor is the user's choice now: clearing the filter keeps it
        (rather than going back to the one the filter hid). Nothing under it: nothing changes."""
        if self.cursor_pid is not None and self.rows:
            self._home_pid = None

    def _move_to(self, index: int, announce: bool = True) -> None:
        if not self._rebuilding:
            self._home_pid = None  # the user (or the app) chose: that is the selection now
        if not self.rows:
            self._cursor_index = 0
            if self.cursor_pid is not None:
                self.cursor_pid = None
                self.post_message(self.Selected(None))
            return
        index = max(0, min(index, len(self.rows) - 1))
        self._cursor_index = index
        pid = self.rows[index].pid
        changed = pid != self.cursor_pid
        self.cursor_pid = pid
        self._scroll_cursor_into_view()
        if changed or announce:
            self.post_message(self.Selected(self.rows[index]))
        self.refresh()


    def select_pid(self, pid: int) -> bool:
        for i, v in enumerate(self.rows):
            if v.pid == pid:
                self._move_to(i)
                return True
        return False

    def on_resize(self, event: events.Resize) -> None:
        self._fit_virtual_size(event.size.width)

    def _fit_virtual_size(self, width: int | None = None) -> None:
        """The scrollable height: the row count, with up to SLACK_ROWS blank rows at the end.

        A change of the virtual size costs a layout pass of the whole screen; on a busy machine
        the process count changes on most ticks. So the height grows at once when rows come,
        but shrinks only when SLACK_ROWS rows have gone (below the last process: blank lines).
        """
        width = self.size.width if width is None else width
        height = self.virtual_size.height
        rows = len(self.rows)
        if not rows <= height <= rows + self.SLACK_ROWS or width != self.virtual_size.width:
            height = rows + (self.SLACK_ROWS // 2 if height > rows else 0)
            self.virtual_size = Size(width, height)

    # --- drawing --------------------------------------------------------------
    def layout(self, width: int) -> tuple[tuple[Column, int], ...]:
        return _layout(width)

    def render_line(self, y: int) -> Strip:
        index = int(self.scroll_offset.y) + y
        width = self.size.width
        if width != self._drawn_width:
            self._drawn, self._drawn_width = {}, width
        line = self._drawn.get(index)
        if line is None:
            line = self._drawn[index] = self._line(index, width)
        if not line:
            return Strip.blank(width, self.rich_style)
        texts, stale, kernel_thread, under_cursor = line

        def style(name: str) -> Style:
            return self.get_component_rich_style(name, partial=True)

        base = self.rich_style
        if kernel_thread:
            base = base + style("process-table--kernel")
        if under_cursor:
            # The full style: partial would drop the blending of the translucent background.
            base = base + self.get_component_rich_style("process-table--cursor")
        unknown_style = base + style("process-table--unknown")
        stale_style = base + style("process-table--stale")
        segments = []
        for (col, w), text in zip(self.layout(width), texts):
            seg_style = base
            if text == "?":
                seg_style = unknown_style
            elif stale and col.stale_with_rollup:
                seg_style = stale_style
            segments.append(Segment(cell(text, w, col.align), seg_style))
            segments.append(Segment(" ", base))
        return Strip(segments).crop(0, width).extend_cell_length(width, base)

    def watch_scroll_y(self, old: float, new: float) -> None:
        super().watch_scroll_y(old, new)
        self.app.call_later(self.app.update_visible)


class RssChart(CachedPlot):
    """The selected process's RSS over the last minutes. Redrawn only when its data changed."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self._drawn_key = None
        self._drawn_at = 0.0
        self.marks_drawn: tuple = ()  # the action marks on the picture (tests look)

    def show(self, view: ProcessView | None, history: History | None) -> None:
        """``history``: the view's (Snapshot.history)."""
        # A plotext redraw costs 10-40 ms: redraw when the process changed or its RSS moved by
        # a step the chart can show (a braille dot: the drawn range / (4 x plot rows)), and
        # otherwise when time has moved by a tenth of the span shown, but 20 s at least and 30 s
        # at most (5 minutes shown; every 10 s cost 0.12 % of a core), so that the time axis
        # keeps up. The exact figure of every tick is on the line above.
        pid = view.pid if view else None
        rss = view.sample.rss_bytes if view else None
        times = history.point_times() if view else ()
        rss_history = history.column(1) if view else ()
        now = times[-1] if times else 0.0
        plotted = len(times) >= 2
        # memtop's own actions (trim on this process; evict and drop caches, machine-wide) are
        # marked where they happened, with what they released: before and after side by side.
        marks = tuple(m for m in getattr(self.app, "action_marks", ())
                      if view is not None and (m.identity is None or m.identity == view.sample.identity)
                      and times and m.time >= times[0])
        # Live, time only moves forward; in replay (`memtop replay`) every step is drawn exactly.
        live = getattr(self.app, "replay", None) is None
        if live and self._drawn_key is not None and picture_kept(times, self._drawn_at):
            drawn_pid, drawn_rss, step, drawn_plotted, drawn_marks = self._drawn_key
            if (pid, plotted, marks) == (drawn_pid, drawn_plotted, drawn_marks) and within_dot(rss, drawn_rss, step):
                return
        known = [r for r in rss_history if r is not None]
        y_range = _y_range(known)
        rows = max(1, self.size.height - 4)  # title, x axis, its labels and its title
        step = (y_range[1] - y_range[0]) / (4 * rows) if known else 0.0
        self._drawn_key, self._drawn_at = (pid, rss, step, plotted, marks), now
        self.marks_drawn = ()
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        if view is None or len(times) < 2:
            plt.title("RSS history: waiting for a second tick" if view else "RSS history: no process selected")
            self.replot()
            return
        # Clock times on the x axis, not "seconds ago": a picture kept for a few ticks (see
        # above) stays true; it only lacks the newest points, which are within a dot of it.
        snapshot = self.app.snapshot
        offset = snapshot.system.wall_time - snapshot.system.monotonic if snapshot is not None else None
        points = [(t, r / 2**20) for t, r in zip(times, rss_history) if r is not None]
        if not points:
            plt.title(f"RSS of PID {view.pid}: unknown (no VmRSS in /proc/{view.pid}/status)")
            self.replot()
            return
        xs = [p[0] for p in points]
        plt.plot(xs, [p[1] for p in points], marker="braille")
        first, last = xs[0], xs[-1]
        plt.xticks(*clock_ticks(first, last, offset))
        low, high = y_range[0] / 2**20, y_range[1] / 2**20
        drawn = []
        for mark in marks:
            if mark.time > last:
                continue  # the tick after the action is not read yet: drawn with it
            plt.vline(mark.time, "red")
            # The label beside its line, on the side with room, staggered so that two do not overlap.
            right = last > first and (mark.time - first) / (last - first) > 0.6
            plt.text(f"{mark.label} " if right else f" {mark.label}", mark.time,
                     high - (high - low) * (0.08 + 0.22 * (len(drawn) % 3)), color="red",
                     alignment="right" if right else "left")
            drawn.append(mark)
        self.marks_drawn = tuple(drawn)
        plt.title(f"RSS of PID {view.pid} in MiB, by clock time ({_clock(first, offset)} to {_clock(last, offset)})"
                  + ("; red: memtop's actions" if drawn else ""))
        plt.ylim(low, high)
        plt.yfrequency(3)
        self.replot()


def _y_range(values: list[int]) -> tuple[float, float]:
    """The chart's RSS axis: the values' range, but at least 10 % of the peak (and 1 MiB), so that
    a flat process's jitter of a few pages looks as small as it is instead of filling the chart."""
    if not values:
        return 0.0, 1.0
    low, high = min(values), max(values)
    span = max(high - low, high * 0.10, 2**20)
    bottom = max(0.0, (low + high) / 2 - span / 2)
    return bottom, bottom + span


def _clock(monotonic: float, offset: float | None) -> str:
    """A monotonic time as the local clock time (HH:MM:SS), or seconds before now without a clock."""
    if offset is None:
        return f"{monotonic:.0f}s"
    return time.strftime("%H:%M:%S", time.localtime(monotonic + offset))


class ProcessesTab(TabView):
    TAB_TITLE = "Processes"
    TAB_ID = "processes"
    TAB_ABOUT = ("who uses memory, live: RSS, PSS, USS, anon/file/shmem, swap, LazyFree, threads, fds, "
                 "page faults per second, the RSS trend, and the selected process's RSS history as a chart")
    PARTS = ("container_names",)
    FIGURE_SOURCES = tuple((c.title, c.source) for c in COLUMNS) + (
        ("totals", "sums of the rows shown; '≥' where some rows are unknown"),
        ("rows off screen", "a process off screen whose stat line and fd count have not changed for 30 s is read "
                            "every other tick (its figures up to one tick older); on screen or selected, every tick"),
        ("dim PSS/USS/LAZYFREE", "smaps_rollup read before the process last changed (its stat line); rows on "
                                 "screen are read every tick, every 5 ticks while idle; other rows every 5, or 30 idle; "
                                 "a read that cost c s of CPU is not repeated sooner than 5000·c s after (a big busy "
                                 "process: ~1/5000 of a core), except for the selected process"),
        ("detail (source, age)", "where PSS/USS were read (smaps_rollup, or smaps summed when it fails) and how "
                                 "long ago; 'unchanged': the process's stat line has not changed since, so they "
                                 "still hold"),
        ("chart", "VmRSS of the selected process at each tick (last 5 minutes at 2 s), against clock time; "
                  "redrawn when RSS moves by a step it can show, else when time moved by a tenth of the span "
                  "(20 to 30 s; the line above has every tick's figure)"),
    )
    TAB_KEYS = (("↑ ↓ PgUp PgDn Home End", "move the selection"),
                ("Esc", "clear the filter"))
    OPENS_LAYERS = True
    TRIMS = True
    _typing_filter = False  # between / and Enter or Esc in the filter box

    def compose(self) -> ComposeResult:
        self.table = ProcessTable(id="process-table")
        yield ColumnHeader(self.table, id="process-header")
        yield self.table
        yield Static("", id="process-totals", markup=False)
        yield TextBox(placeholder="filter: name, user, PID or container (Enter keeps it, Esc clears)", id="process-filter")
        with Vertical(id="process-detail"):
            yield Static("", id="process-detail-line", markup=False)
            yield RssChart(id="rss-chart")

    def on_mount(self) -> None:
        self.query_one("#process-filter").display = False
        self.table.focus()

    def on_show(self) -> None:
        # Coming back from another tab: the arrows (and the tab's keys) reach the table, unless
        # the user was typing a filter (between / and Enter or Esc). Not "unless the box has the
        # focus": while another tab was being built, Textual could leave the focus in the box
        # (its filter kept, so displayed), and then p was typed into it instead of pausing.
        if not self._typing_filter:
            self.focus_when_shown(self.table)

    def on_resize(self, event: events.Resize) -> None:
        # Short terminals (80x24 over ssh) keep the rows for the table: the chart gives way to
        # a one-line sparkline of the same history.
        tall = event.size.height >= 30
        self.query_one("#process-detail").styles.height = 12 if tall else 3
        self.query_one(RssChart).display = tall

    def show_sample(self, sample: Sample) -> None:
        names = sample.get("container_names")
        if sample.processes is not self.table.snapshot:  # a part's new result: the rows are the same
            if names is not None:
                self.table.containers = names.by_pid
            self.show_snapshot(sample.processes)
        elif names is not None and names.by_pid is not self.table.containers:
            self.table.set_containers(names.by_pid)
            self._show_detail(self.table.selected_view)

    def show_snapshot(self, snapshot: Snapshot) -> None:
        self.table.set_snapshot(snapshot)
        self._show_totals()
        self._show_detail(self.table.selected_view)

    def _show_totals(self) -> None:
        rows = self.table.rows
        totals = self.table.totals
        sums, known = totals[:4], totals[4:]

        def total(i: int) -> str:
            if not rows:
                return fmt_bytes(0)  # nothing listed sums to nothing (a filter matching none)
            if not known[i]:
                return fmt_bytes(None)
            return ("≥" if known[i] < len(rows) else "") + fmt_bytes(sums[i])

        text = (f" {len(rows)} of {len(self.table.all_views)} processes"
                + (f" matching '{self.table.filter_text}'" if self.table.filter_text else "")
                + f"   RSS {total(0)}   PSS {total(1)}   USS {total(2)}   swap {total(3)}"
                + self._sort_note())
        totals = self.query_one("#process-totals", Static)
        if totals.content != text:  # an unchanged line costs no repaint
            totals.update(text, layout=False)  # fixed height: no layout pass

    def _sort_note(self) -> str:
        """Say the sort when its column is not on screen (a narrow terminal drops columns)."""
        shown = {c.key for c in fit_columns(self.table.size.width or 80)}
        if self.table.sort_key in shown:
            return ""
        column = COLUMNS_BY_KEY[self.table.sort_key]
        return f"   sorted by {column.title} {'▼' if self.table.sort_reverse else '▲'} (column hidden: widen)"

    def _show_detail(self, view: ProcessView | None) -> None:
        line = self.query_one("#process-detail-line", Static)
        snapshot = self.table.snapshot
        history = snapshot.history(view) if view is not None and snapshot is not None else None
        if view is None or history is None:
            text = " no process selected"
        else:
            s = view.sample
            r = s.rollup
            note = ""
            if r is not None:
                age = "fresh"
                age_s = snapshot.rollup_age_s(view)
                if age_s and age_s >= 1:
                    age = (f"{age_s:.0f}s old" if age_s < 99.5 else f"{age_s / 60:.0f}m old") + (
                        ", unchanged" if view.rollup_current else "")  # the process: idle since the read
                rollup = (f"PSS {fmt_bytes(r.pss)}  USS {fmt_bytes(r.uss)}  Private_Dirty {fmt_bytes(r.private_dirty)}"
                          f"  LazyFree {fmt_bytes(r.lazyfree)}")
                note = f"  ({r.source}, {age})"
            else:
                rollup = f"PSS/USS unknown: {printable(s.rollup_reason)}"
            fd = "" if s.fd_reason is None else f"  fds unknown: {printable(s.fd_reason)}"
            name = printable(s.name, 200)
            container = self.table.containers.get(s.pid)
            where = f"   in {printable(container.label, 60)}" if container is not None and container.kind != "host" else ""
            first = f" PID {s.pid} {cut(name, 60)}{where}"
            second = f" RSS {fmt_bytes(s.rss_bytes)}  {rollup}"
            width = self.size.width or 120
            # Where the rollup's source and age go depends on the width alone, not on this tick's
            # figures and age (which moved the note between the lines from tick to tick).
            if width >= _SECOND_LINE_WIDEST + _NOTE_WIDEST:
                second += note
            elif note:  # narrow: after a shorter command
                first = f" PID {s.pid} {cut(name, max(12, width - len(note) - len(str(s.pid)) - 6))}{note}"
            rss_history = history.column(1)
            known = [r for r in rss_history if r is not None]
            third = f"\n {trend_sentence(history.rss_trend())}"
            if len(known) >= 2 and not self.query_one(RssChart).display:
                times = history.point_times()
                span = fmt_duration(times[-1] - times[0])
                head = f" RSS, last {span}: "
                tail = (f"  min {fmt_bytes(min(known))}  max {fmt_bytes(max(known))}"
                        f"  ΔRSS/min {trend_text(history.rss_trend())}")
                # the sparkline gives way, so the figures after it fit (80 columns cut "max" off)
                spark = min(len(rss_history), 40, max(8, width - len(head) - len(tail) - 1))
                third = f"\n{head}{sparkline(rss_history, spark)}{tail}"
            text = f"{first}\n{second}{fd}{third}"
        if line.content != text:
            line.update(text, layout=False)
        self.query_one(RssChart).show(view if history is not None else None, history)

    @on(ProcessTable.Selected)
    def _selected(self, message: ProcessTable.Selected) -> None:
        self._show_detail(message.view)
        self.app.select_process(message.view)

    # --- filter and sort --------------------------------------------------------
    def can_filter(self) -> bool:
        return True

    def can_sort(self) -> bool:
        return True

    def start_filter(self) -> bool:
        box = self.query_one("#process-filter", Input)
        box.display = True
        self._typing_filter = True
        self.focus_now(box)
        return True

    @on(Input.Changed, "#process-filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.table.set_filter(event.value)
        self._show_totals()

    def box_enter(self, box: TextBox) -> None:
        self._typing_filter = False
        self.table.set_filter(box.value)  # now: Input.Changed comes later
        self.table.keep_selection()  # Enter on what the filter found: that process, also once cleared
        self._show_totals()
        if not box.value:
            box.display = False
        self.focus_now(self.table)

    def box_escape(self, box: TextBox) -> None:
        self.key_escape()

    def key_escape(self) -> None:
        self._typing_filter = False
        box = self.query_one("#process-filter", Input)
        if box.display:
            box.value = ""
            box.display = False
            self.table.set_filter("")
            self._show_totals()
            self.focus_now(self.table)

    def choose_sort(self) -> bool:
        from memtop.tui.screens import SortScreen

        def chosen(key: str | None) -> None:
            if key is None:
                return
            if key == self.table.sort_key:
                reverse = not self.table.sort_reverse
            else:
                reverse = key not in ("pid", "user", "command")
            self.table.set_sort(key, reverse)
            self.query_one(ColumnHeader).refresh()
            self._show_totals()

        self.app.push_screen(SortScreen([(c.key, c.title) for c in COLUMNS], self.table.sort_key), chosen)
        return True
