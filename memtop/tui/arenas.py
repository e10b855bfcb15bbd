"""The Arenas tab: every glibc arena of the selected process, its free-chunk histogram,
malloc_info on request beside the walk, the arena-explosion diagnosis with the RSS that
MALLOC_ARENA_MAX=2 would save, the allocator's tuning state, and the smaps census.

The heap walk and the full smaps read are slow: they are the Collector's ``arenas`` part (a
worker thread, memtop/collect/parts.py), read while the tab is shown and a process is selected
(again every 10 s or more, or at once with `r`). malloc_info is fetched through gdb only when
the user asks (`m`, confirmed): an action (memtop/actions/malloc_info.py).
"""

from __future__ import annotations

import time

from rich.text import Text
from textual import events, on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import DataTable, Static

from memtop.format import counted, exact_bytes, fmt_bytes, fmt_count, fmt_duration, fmt_percent
from memtop.model.arenas import FETCH_CHUNKS, ArenaAnalysis, ArenaDelta, MallocInfo, MallocInfoResult
from memtop.model.findings import Severity
from memtop.model.process import ProcessIdentity
from memtop.model.sample import Sample
from memtop.model.snapshot import Snapshot
from memtop.render.arenas import bucket_histogram, bucket_low, cap_text, census_lines, no_arenas_reason, threads_text, utilization
from memtop.text import printable
from memtop.tui.tab import NOT_RECORDED, TabView

BAR_WIDTH = 10


def _short_size(value: int) -> str:
    """Bucket bounds are powers of two: 32, 1K, 64K, 1M."""
    for shift, unit in ((20, "M"), (10, "K")):
        if value >= 1 << shift:
            return f"{value >> shift}{unit}"
    return str(value)

COLUMNS = ("#", "ARENA", "HEAPS", "SYSTEM", "IN USE", "FREE", "FAST", "TCACHE", "TOP", "UTIL", "RESIDENT", "THR")
MI_COLUMNS = ("MI SYSTEM", "MI FREE+TOP", "MI FAST")
# With malloc_info's columns the table is ~145 cells wide: below this width ARENA and HEAPS give
# way (the histogram's title names the arena), so that 120 columns show the comparison whole.
MI_FULL_WIDTH = 150
MI_NARROW_DROPS = ("ARENA", "HEAPS")


class MallocInfoLoaded(Message):
    def __init__(self, result: MallocInfoResult):
        super().__init__()
        self.result = result


class ConfirmMallocInfo(ModalScreen[bool]):
    """Says what fetching malloc_info does to the process before it is done."""

    BINDINGS = [Binding("y", "dismiss(True)", "Fetch"), Binding("n,escape", "dismiss(False)", "Cancel")]
    DEFAULT_CSS = """
    ConfirmMallocInfo { align: center middle; }
    ConfirmMallocInfo > Static { width: 72; height: auto; border: round $warning; background: $surface; padding: 0 1; }
    """

    def __init__(self, pid: int, name: str):
        super().__init__()
        self.pid = pid
        self.process_name = name

    def compose(self) -> ComposeResult:
        yield Static(Text(
            f"Fetch malloc_info from PID {self.pid} ({printable(self.process_name, 40)})?\n\n"
            "memtop attaches gdb, which stops the process for a fraction of a second, and calls "
            "open_memstream, malloc_info, fclose and free in it: a few KiB are allocated and freed "
            "in one arena. Nothing is written to its stdout, stderr or files.\n\n"
            "y: fetch    n / Esc: cancel"))


def _mi_groups(mi_arena, walk_lows) -> tuple[dict[int, int], dict[int, tuple[int, int]]]:
    """malloc_info's <sizes> against the walk's buckets. A line is one bin: its chunks' smallest
    and largest sizes (``from``, ``to``, with the flag bits) and their count and total. A large
    bin may hold chunks of several buckets (2.16 MiB and 193 MiB in one); its chunks cannot be
    told apart, so the buckets it spans are compared as one group. Returns the group (its first
    bucket) of every bucket shown, and malloc_info's (count, total) per group."""
    spans = []
    for s in mi_arena.sizes:
        lo, hi = bucket_low(s.from_bytes & ~7), bucket_low(s.to_bytes & ~7)
        spans.append((min(lo, hi), max(lo, hi), s.count, s.total_bytes - s.count))
    lows = sorted(set(walk_lows) | {lo for lo, *_ in spans} | {hi for _, hi, *_ in spans})
    group = {low: low for low in lows}
    merged: list[list[int]] = []  # [first, last] bucket of each group, overlapping spans joined
    for lo, hi, *_ in sorted(spans):
        if merged and lo <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    for first, last in merged:
        for low in lows:
            if first <= low <= last:
                group[low] = first
    totals: dict[int, tuple[int, int]] = {}
    for lo, _, count, total in spans:
        c, t = totals.get(group[lo], (0, 0))
        totals[group[lo]] = (c + count, t + total)
    return group, totals


def _histogram_text(arena, mi_arena, styles) -> Text:
    """The free-chunk histogram of one arena from the walk, and malloc_info's beside it."""
    walk = bucket_histogram(arena.free_size_histogram)
    group: dict[int, int] = {}
    mi_groups: dict[int, tuple[int, int]] = {}
    if mi_arena is not None:
        group, mi_groups = _mi_groups(mi_arena, [low for low, *_ in walk])
    text = Text(no_wrap=True, overflow="ellipsis")
    header = f"{'bytes':>9} {'':<{BAR_WIDTH}} {'chunks':>6} {'total':>9}"
    if mi_arena is not None:
        header += f" | {'malloc_info':>18}"
    text.append(header + "\n", styles["dim"])
    if not walk and not mi_groups:
        text.append("no free chunks\n", styles["dim"])
        return text
    biggest = max((total for *_, total in walk), default=0) or 1
    lows = sorted({low for low, *_ in walk} | set(mi_groups))
    by_low = {low: (high, count, total) for low, high, count, total in walk}
    members: dict[int, list[int]] = {}
    for low in lows:
        members.setdefault(group.get(low, low), []).append(low)
    for low in lows:
        high, count, total = by_low.get(low, (low * 2 - 1 if low else 31, 0, 0))
        label = f"{_short_size(low)}+" if high is None else f"{_short_size(low)}–{_short_size(high + 1)}"
        bar = "█" * max(1 if total else 0, round(BAR_WIDTH * total / biggest))
        text.append(f"{label:>9} ")
        text.append(f"{bar:<{BAR_WIDTH}}", styles["bar"])
        text.append(f" {fmt_count(count):>6} {fmt_bytes(total):>9}")
        if mi_arena is not None:
            rows = members.get(group.get(low, low), [low])
            text.append(" | ")
            if low != rows[0]:  # in the bin shown on the first row of its group
                text.append(f"{'┘' if low == rows[-1] else '│':>18}", styles["dim"])
            else:
                mi_count, mi_total = mi_groups.get(low, (0, 0))
                walked = sum(by_low.get(m, (None, 0, 0))[1] for m in rows)
                # ≈: off by no more than the chunks the fetch itself allocated (FETCH_CHUNKS)
                differs = abs(mi_count - walked) > FETCH_CHUNKS
                sign = "≠" if differs else "=" if mi_count == walked else "≈"
                mark = "┐" if len(rows) > 1 else ""
                text.append(f"{sign} {fmt_count(mi_count):>6} {fmt_bytes(mi_total):>9}{mark}",
                            styles["differs"] if differs else styles["dim"])
        text.append("\n")
    return text


class ArenasTab(TabView):
    TAB_TITLE = "Arenas"
    TAB_ID = "arenas"
    TAB_ABOUT = "every glibc arena of the process, fragmentation, malloc_info, MALLOC_ARENA_MAX advice"
    FIGURE_SOURCES = (
        ("arenas, HEAPS, SYSTEM", "heap walk: main_arena.next round the list (malloc_state.system_mem); heaps by heap_info.prev"),
        ("IN USE", "system - free - fastbins - top, as mallinfo2's uordblks (tcache chunks included)"),
        ("FREE", "heap walk: chunks whose next chunk has PREV_INUSE clear (unsorted, small, large bins)"),
        ("FAST / TCACHE", "heap walk: fastbinsY lists / tcache_perthread_struct entries (tcache_key)"),
        ("TOP", "heap walk: the size of malloc_state.top"),
        ("UTIL", "IN USE / SYSTEM"),
        ("RESIDENT", "/proc/PID/pagemap: present pages of the arena's heaps (zero page excluded)"),
        ("THR", "malloc_state.attached_threads"),
        ("threads", "/proc/PID/stat field 20 (num_threads)"),
        ("cap", "mp_.arena_max, else max(arena_test + 1, 8 x CPUs); CPUs from Cpus_allowed_list in /proc/PID/status"),
        ("MALLOC_ARENA_MAX, GLIBC_TUNABLES", "/proc/PID/environ (the environment the process started with)"),
        ("mmap/trim threshold, top_pad", "mp_ (struct malloc_par) read from the process"),
        ("MALLOC_ARENA_MAX=2 saving", "thread arenas' resident - their live data - the largest slack of one arena"),
        ("histogram", "heap walk, free chunks by size; with m: malloc_info's <sizes> (flag bits removed); "
                      "= the same count, ≈ off by at most the 4 chunks the fetch itself allocates, ≠ more; "
                      "┐ ┘: one bin of malloc_info whose chunks fall in several buckets, compared as one"),
        ("MI columns", "malloc_info(3) through gdb: <system type=current>, <total type=rest> (bins + top), <total type=fast>"),
        ("census", "/proc/PID/smaps: 64 MiB-aligned rw regions with a PROT_NONE tail, stacks, other anonymous"),
    )
    TAB_KEYS = (
        ("↑ ↓", "choose the arena whose histogram is shown"),
        ("r", "walk the heap again now"),
        ("m", "fetch malloc_info through gdb (asks first) and compare"),
    )
    BINDINGS = [
        Binding("r", "rewalk", "Walk again"),
        Binding("m", "malloc_info", "malloc_info"),
    ]
    COMPONENT_CLASSES = {"arenas--title", "arenas--warning", "arenas--differs", "arenas--dim", "arenas--bar",
                         "arenas--line"}
    DEFAULT_CSS = """
    ArenasTab > .arenas--title { text-style: bold; }
    ArenasTab > .arenas--warning { color: $warning; text-style: bold; }
    ArenasTab > .arenas--differs { color: $error; text-style: bold; }
    ArenasTab > .arenas--dim { color: $text-muted; }
    ArenasTab > .arenas--bar { color: $primary; }
    ArenasTab > .arenas--line { color: $success; text-style: bold; }
    #arenas-summary { height: auto; max-height: 4; background: $panel; padding: 0 1; }
    #arenas-table { height: auto; max-height: 45%; scrollbar-size-vertical: 1; }
    #arenas-lower { height: 1fr; }
    #arenas-histogram-box { width: 1fr; min-width: 43; scrollbar-size-vertical: 1; }
    #arenas-notes-box { width: 1fr; scrollbar-size-vertical: 1; }
    #arenas-histogram, #arenas-notes { padding: 0 1; }
    #arenas-histogram { text-wrap: nowrap; text-overflow: ellipsis; }
    """

    def __init__(self, **kw):
        super().__init__(**kw)
        self.identity: ProcessIdentity | None = None
        self.analysis: ArenaAnalysis | None = None
        self.error: str | None = None
        self.walk_seconds: float | None = None
        self.walked_at: float | None = None  # monotonic
        self.walking = False  # a walk is on its way (not Widget.loading: that shows a spinner, 16 Hz)
        self.malloc_info: MallocInfoResult | None = None
        self.selected_arena = 0
        self._rows_key = None
        self._drawn = None

    def compose(self) -> ComposeResult:
        yield Static("", id="arenas-summary")
        table = DataTable(id="arenas-table", cursor_type="row", zebra_stripes=True)
        yield table
        with Horizontal(id="arenas-lower"):
            with VerticalScroll(id="arenas-histogram-box"):
                yield Static("", id="arenas-histogram")
            with VerticalScroll(id="arenas-notes-box"):
                yield Static("", id="arenas-notes")

    def on_mount(self) -> None:
        self._render_all()

    def on_resize(self, event: events.Resize) -> None:
        if self.malloc_info is not None:  # ARENA and HEAPS may give way, or come back
            self._render_table()

    def on_show(self) -> None:
        # The tab's keys (r, m, arrows) work while focus is inside it: take it when shown.
        self.focus_when_shown(self.query_one("#arenas-table", DataTable))

    # --- the app's calls ---------------------------------------------------------------------
    PARTS = ("arenas",)

    def show_target(self, target: ProcessIdentity | None) -> None:
        if target == self.identity:
            return
        self.identity = target
        self.analysis = None
        self.error = None
        self.malloc_info = None
        self.walked_at = None
        self.selected_arena = 0
        self._drawn = None
        self.walking = target is not None
        self._render_all()
        if self.is_attached:
            self.app.refresh_bindings()

    def show_sample(self, sample: Sample) -> None:
        result = sample.result("arenas")
        if result is not None and result is not self._drawn and result.key == self.identity:
            self._drawn = result
            self.walking = result.running and result.value is None and result.error is None
            if not result.running or result.value is not None or result.error:
                if result.finished != self.walked_at:
                    self.walked_at = result.finished
                    self.walk_seconds = result.seconds
                    self.show_analysis(result.value, result.error)
        elif result is None and self.replaying and self.identity is not None:
            self.walking = False
            if self.error != NOT_RECORDED:
                self.show_analysis(None, f"arenas {NOT_RECORDED}")
        self._render_summary(sample.processes)

    @work(thread=True, exclusive=True, group="arenas-malloc-info", exit_on_error=False)
    def _fetch_malloc_info(self, identity: ProcessIdentity, mutexes: tuple[int, ...], root) -> None:
        from memtop.actions.malloc_info import fetch

        self.post_message(MallocInfoLoaded(fetch(identity, mutexes, root)))

    @on(MallocInfoLoaded)
    def _malloc_info_loaded(self, message: MallocInfoLoaded) -> None:
        result = message.result
        if result.identity != self.identity:
            return
        if result.error is not None:
            self.notify(f"malloc_info: {result.error}", severity="error", timeout=8)
            return
        self.show_malloc_info(result)
        self.notify(f"malloc_info fetched in {result.seconds:.2f} s; walking again to compare")
        self.app.collector.refresh("arenas")  # a walk right after: the two compared at nearly one moment

    def show_malloc_info(self, result: MallocInfoResult) -> None:
        """Show malloc_info beside the walk (also the entry point for tests with fixed data)."""
        self.malloc_info = result
        self._render_all()

    # --- actions ---------------------------------------------------------------------------------
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """r and m need a selected process, and act on the machine now: not in replay; m calls
        into the process, so not in read-only mode either."""
        if action == "rewalk":
            return self.identity is not None and not self.replaying
        if action == "malloc_info":
            return self.identity is not None and not self.replaying and not getattr(self.app, "read_only", False)
        return super().check_action(action, parameters)

    def action_rewalk(self) -> None:
        if self.identity is None:
            self.notify("select a process first (Processes tab)")
            return
        self.walking = True
        self._render_summary()
        self.app.collector.refresh("arenas")

    def action_malloc_info(self) -> None:
        if self.identity is None:
            self.notify("select a process first (Processes tab)")
            return
        if getattr(self.app, "read_only", False):
            self.notify("read-only mode: malloc_info calls into the process through gdb, so it is disabled",
                        severity="warning")
            return
        heap = self.analysis.heap if self.analysis is not None else None
        if heap is not None and heap.allocator_kind not in ("glibc", "unknown"):
            self.notify(f"PID {self.identity.pid} uses {heap.allocator_kind}, not glibc malloc: no malloc_info",
                        severity="warning")
            return
        identity = self.identity
        mutexes = tuple(a.address for a in heap.arenas) if heap is not None and heap.valid else ()
        name = self.analysis.comm if self.analysis is not None and self.analysis.comm else "?"

        def chosen(yes: bool | None) -> None:
            if yes and identity == self.identity:
                self.notify(f"fetching malloc_info from PID {identity.pid} through gdb…")
                self._fetch_malloc_info(identity, mutexes, self.app.root)

        self.app.push_screen(ConfirmMallocInfo(identity.pid, name), chosen)

    @on(DataTable.RowHighlighted, "#arenas-table")
    def _row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        key = event.row_key.value if event.row_key is not None else None
        if key is not None and key.isdigit() and int(key) != self.selected_arena:
            self.selected_arena = int(key)
            self._render_histogram()

    # --- drawing ---------------------------------------------------------------------------------
    def _styles(self) -> dict:
        get = self.get_component_rich_style
        return {name: get(f"arenas--{name}") for name in ("title", "warning", "differs", "dim", "bar", "line")}

    def show_analysis(self, analysis: ArenaAnalysis | None, error: str | None = None) -> None:
        """Show a finished analysis (also the entry point for tests with fixed data)."""
        self.analysis = analysis
        self.error = error
        self._render_all()

    def _render_all(self) -> None:
        self._render_summary()
        self._render_table()
        self._render_histogram()
        self._render_notes()

    def _render_summary(self, snapshot: Snapshot | None = None) -> None:
        summary = self.query_one("#arenas-summary", Static)
        styles = self._styles()
        if self.identity is None:
            summary.update(Text("No process selected: choose one on the Processes tab (1).", styles["dim"]))
            return
        a = self.analysis
        text = Text()
        name = a.comm if a is not None and a.comm else ""
        text.append(f"PID {self.identity.pid} {printable(name)}", styles["title"])
        threads = a.threads if a is not None else None
        snapshot = snapshot or getattr(self.app, "snapshot", None)
        view = snapshot.by_pid(self.identity.pid) if snapshot is not None else None
        if view is not None:
            threads = view.sample.threads
        heap = a.heap if a is not None else None
        none = no_arenas_reason(a) if a is not None else None
        if none is not None:  # a kernel thread, a zombie
            text.append(f"  {none}")
            summary.update(text)
            return
        if heap is not None and heap.valid:
            text.append(f"  glibc {heap.glibc_version or '?'}  ")
            text.append(f"{threads_text(threads)}, {counted(len(heap.arenas), 'arena')}, ")
        else:
            text.append(f"  {threads_text(threads)}, arenas ?  ")
        if a is not None:
            text.append(printable(cap_text(a)))
            env = a.env
            text.append("\n")
            if env.readable:
                text.append(f"MALLOC_ARENA_MAX {printable(env.get('MALLOC_ARENA_MAX') or 'unset', 40)}  "
                            f"GLIBC_TUNABLES {printable(env.glibc_tunables or 'unset', 80)}")
                others = [f"{k}={v}" for k, v in env.malloc_vars if k != "MALLOC_ARENA_MAX"]
                if others:
                    text.append("  " + printable(" ".join(others), 200))
            else:
                text.append(f"environment ? ({printable(env.reason)})", styles["dim"])
        if self.walking:
            text.append("\nwalking the heap…", styles["dim"])
        elif self.walked_at is not None and self.walk_seconds is not None:
            ago = fmt_duration(time.monotonic() - self.walked_at)
            if heap is not None and heap.valid:
                text.append(f"\nwalked {ago} ago in {self.walk_seconds:.2f} s; r walks again, m fetches malloc_info",
                            styles["dim"])
            else:  # a walk that was refused or failed is not "walked"
                status = heap.status if heap is not None else "not possible"
                text.append(f"\nheap walk {status} ({ago} ago); r tries again", styles["dim"])
        summary.update(text)

    def _render_table(self) -> None:
        table = self.query_one("#arenas-table", DataTable)
        a = self.analysis
        heap = a.heap if a is not None else None
        mi = self.malloc_info.info if self.malloc_info is not None else None
        columns = COLUMNS + (MI_COLUMNS if mi is not None else ())
        narrow = mi is not None and (self.size.width or MI_FULL_WIDTH) < MI_FULL_WIDTH
        shown = [i for i, title in enumerate(columns) if not (narrow and title in MI_NARROW_DROPS)]
        key = (id(a), id(mi), narrow)
        if key == self._rows_key:
            return
        self._rows_key = key
        table.clear(columns=True)
        for i in shown:
            table.add_column(Text(columns[i]), key=columns[i])
        if heap is None or not heap.valid:
            return
        styles = self._styles()
        deltas: dict[tuple[int, str], ArenaDelta] = {}
        if mi is not None:
            from memtop.model.arenas import compare_with_malloc_info

            deltas = {(d.arena, d.figure): d for d in compare_with_malloc_info(heap.arenas, mi)}

        def right(value: str, style=None) -> Text:
            return Text(value, justify="right", style=style or "")

        for i, ar in enumerate(heap.arenas):
            row = [right(str(i)), Text("main" if ar.is_main else f"{ar.address:#x}"), right(str(len(ar.heaps))),
                   right(fmt_bytes(ar.system_bytes)), right(fmt_bytes(ar.in_use_bytes)), right(fmt_bytes(ar.free_bytes)),
                   right(fmt_bytes(ar.fastbin_bytes)), right(fmt_bytes(ar.tcache_bytes)), right(fmt_bytes(ar.top_bytes)),
                   right(fmt_percent(utilization(ar))), right(fmt_bytes(ar.resident_bytes)), right(str(ar.attached_threads))]
            if mi is not None:
                for figure in ("system", "free + top", "fastbins"):
                    d = deltas.get((i, figure))
                    value = fmt_bytes(d.malloc_info) if d is not None else "?"
                    row.append(right(("≠ " if d is None or d.differs else "") + value,
                                     styles["differs"] if d is None or d.differs else None))
            table.add_row(*(row[j] for j in shown), key=str(i))
        total = [right(""), Text("all", style=styles["title"]), right(str(sum(len(x.heaps) for x in heap.arenas))),
                 right(fmt_bytes(heap.system_bytes)), right(fmt_bytes(heap.in_use_bytes)), right(fmt_bytes(heap.free_bytes)),
                 right(fmt_bytes(heap.fastbin_bytes)), right(fmt_bytes(heap.tcache_bytes)), right(fmt_bytes(heap.top_bytes)),
                 right(fmt_percent(heap.in_use_bytes / heap.system_bytes if heap.system_bytes else None)),
                 right(fmt_bytes(_sum_known(a.resident_bytes for a in heap.arenas))),
                 right(str(sum(x.attached_threads for x in heap.arenas)))]
        if mi is not None:
            total += [right(fmt_bytes(mi.system_current)), right(fmt_bytes(mi.rest_bytes)), right(fmt_bytes(mi.fast_bytes))]
        if narrow:  # the ARENA column that says "all" gave way: the # column says it
            total[0] = Text("all", style=styles["title"])
        table.add_row(*(total[j] for j in shown), key="all")
        if self.selected_arena < len(heap.arenas):
            table.move_cursor(row=self.selected_arena, animate=False)

    def _render_histogram(self) -> None:
        box = self.query_one("#arenas-histogram", Static)
        styles = self._styles()
        a = self.analysis
        heap = a.heap if a is not None else None
        if heap is None or not heap.valid or not heap.arenas:
            box.update(Text("free-chunk histogram: needs the heap walk", styles["dim"]))
            return
        index = min(self.selected_arena, len(heap.arenas) - 1)
        arena = heap.arenas[index]
        mi = self.malloc_info.info if self.malloc_info is not None else None
        mi_arena = mi.arenas[index] if mi is not None and index < len(mi.arenas) else None
        text = Text(no_wrap=True, overflow="ellipsis")
        text.append(f"arena #{index} {'main' if arena.is_main else f'{arena.address:#x}'}\n", styles["title"])
        text.append(f"{fmt_count(arena.free_count)} free chunks, {fmt_bytes(arena.free_bytes)}"
                    f"{', fastbins ' + fmt_bytes(arena.fastbin_bytes) if arena.fastbin_bytes else ''}\n")
        text.append_text(_histogram_text(arena, mi_arena, styles))
        if mi_arena is not None:
            note = Text(f"malloc_info (fetched in {self.malloc_info.seconds:.2f} s, just before the walk shown) "
                        "counts top in \"rest\" and sizes with the flag bits; the gdb calls allocate a little "
                        "in one arena. ≠ marks a difference.", styles["dim"])
            box.update(Text("\n").join([text, note]))
            return
        box.update(text)

    def _render_notes(self) -> None:
        notes = self.query_one("#arenas-notes", Static)
        styles = self._styles()
        text = Text()
        if self.error is not None:
            text.append(f"{printable(self.error)}\n", styles["warning"])
        a = self.analysis
        if a is None:
            if self.identity is not None and self.error is None:
                text.append("walking the heap…", styles["dim"])
            notes.update(text)
            return
        heap = a.heap
        none = no_arenas_reason(a)
        if none is not None:  # no heap, no environment, no census to show
            text.append(none[0].upper() + none[1:] + ".\n", styles["dim"])
            notes.update(text)
            return
        if heap is None or not heap.valid:
            text.append(f"heap walk: {printable(a.heap_reason or 'not available')}\n", styles["warning"])
            if heap is not None and heap.last_valid is not None:
                text.append("(the last valid walk is on the Layers tab)\n", styles["dim"])
        for finding in a.findings:
            style = styles["warning"] if finding.severity != Severity.INFO else None
            text.append(printable(finding.text) + "\n", style or "")
        if a.setting_line:
            text.append("Set: ", styles["title"])
            text.append(printable(a.setting_line) + "\n", styles["line"])
        if a.tuning is not None:
            t = a.tuning
            text.append("\ntuning ", styles["title"])
            text.append(f"mmap_threshold {exact_bytes(t.mmap_threshold)}"
                        f" ({'moved' if t.threshold_moved else 'not moved' if t.dynamic_threshold else 'fixed'}),"
                        f" trim_threshold {exact_bytes(t.trim_threshold)}, top_pad {exact_bytes(t.top_pad)},"
                        f" mmapped chunks {fmt_count(t.n_mmaps)}\n")
            # a moved threshold's note is already among the findings above ("Allocator tuning: …")
            for note in t.notes[1:] if t.threshold_moved else t.notes:
                text.append(f"  {printable(note)}\n", styles["dim"])
        text.append("\nsmaps census ", styles["title"])
        if a.census is not None:
            text.append("(without the walk: any process whose smaps is readable)\n", styles["dim"])
            for line in census_lines(a.census):
                text.append(f"  {printable(line)}\n")
            text.append("  cannot tell: " + printable("; ".join(a.census.cannot_tell)) + "\n", styles["dim"])
        else:
            text.append(f"unknown: {printable(a.census_reason)}\n", styles["dim"])
        notes.update(text)


def _sum_known(values) -> int | None:
    values = list(values)
    if any(v is None for v in values):
        return None
    return sum(values)
