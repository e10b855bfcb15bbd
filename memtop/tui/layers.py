"""The Layers tab: for the selected process, who holds each byte, from RSS down.

One stacked bar and a table: the kernel's split (file-backed, anonymous, shmem), the anonymous
part split into brk heap, thread-arena heaps, mmapped malloc chunks, runtime regions, stacks and
the rest; the heap's resident pages split into in use, free kept by glibc, and top; LazyFree and
Swap. Then what malloc_trim(0) would release now, the chunk that pins the heap, and findings.

It renders the Collector's ``layers`` part (memtop/collect/parts.py: :func:`memtop.collect.layers.
explain`, a read-only heap walk, on a worker thread): read for the selected process while the
tab is shown, again every few seconds, with the walk's progress for a large heap.
"""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widget import Widget
from textual.widgets import ProgressBar, Static

from memtop.format import counted, fmt_bytes, fmt_duration, fmt_percent
from memtop.model.heap import LayerReport, split_unknown_reason
from memtop.model.process import ProcessIdentity
from memtop.model.sample import Sample
from memtop.text import printable
from memtop.tui.tab import NOT_RECORDED, TabView
from memtop.tui.widgets import figure_words, flow

# (key, label, component class) of the bar's segments, in order.
SEGMENTS = (
    ("file", "file", "layer-bar--file"),
    ("shmem", "shmem", "layer-bar--shmem"),
    ("in_use", "brk in use", "layer-bar--inuse"),
    ("free", "brk free", "layer-bar--free"),
    ("top", "brk top", "layer-bar--top"),
    ("brk", "brk heap", "layer-bar--brk"),
    ("thread_heaps", "thread heaps", "layer-bar--thread"),
    ("mmapped", "mmapped", "layer-bar--mmapped"),
    ("runtime", "runtime", "layer-bar--runtime"),
    ("stacks", "stacks", "layer-bar--stacks"),
    ("other", "other anon", "layer-bar--other"),
)


NO_COLOR_GLYPHS = ("█", "▓", "▒", "░", "▚", "▞", "▙", "▟", "▛", "▜", "▌")


def bar_values(report: LayerReport) -> list[tuple[str, int]]:
    """The bar's segments in bytes, the same places as the table. The brk heap is shown through
    its split (in use / free / top, which add up to it) when the walk is valid, and whole as
    "brk heap" when it is not; the thread-arena heaps are one segment."""
    values: dict[str, int] = {}
    values["file"] = report.file_bytes or 0
    values["shmem"] = report.shmem_bytes or 0
    anon = {layer.key: layer.bytes or 0 for layer in report.anon_split}
    brk_split = {layer.key: layer.bytes or 0 for layer in report.heap_split if layer.parent == "brk"}
    if brk_split:
        for key in ("in_use", "free", "top"):
            values[key] = brk_split.get(key, 0)
    else:
        values["brk"] = anon.get("brk", 0)
    for key in ("thread_heaps", "mmapped", "runtime", "stacks", "other"):
        values[key] = anon.get(key, 0)
    return [(key, values.get(key, 0)) for key, _, _ in SEGMENTS]


class LayerBar(Widget):
    """One stacked bar of RSS, with a legend line under it."""

    COMPONENT_CLASSES = {cls for _, _, cls in SEGMENTS}
    DEFAULT_CSS = "LayerBar { height: auto; }"

    def __init__(self, **kw):
        super().__init__(**kw)
        self.values: list[tuple[str, int]] = []
        self.empty = "RSS unknown"

    def show(self, values: list[tuple[str, int]], empty: str = "RSS unknown") -> None:
        self.values = values
        self.empty = empty
        self.refresh(layout=True)  # height is auto: the legend may need another line

    def render(self) -> Text:
        width = max(10, self.size.width)
        total = sum(v for _, v in self.values)
        text = Text()
        if not total:
            return Text(self.empty, style=self.rich_style)
        styles = {key: self.get_component_rich_style(cls) for key, _, cls in SEGMENTS}
        # Without colour (NO_COLOR) each segment has its own glyph, shown in the legend.
        no_color = getattr(self.app, "no_color", False)
        glyphs = {key: (NO_COLOR_GLYPHS[i % len(NO_COLOR_GLYPHS)] if no_color else "█")
                  for i, (key, _, _) in enumerate(SEGMENTS)}
        # Largest-remainder rounding so the cells add up to the width.
        raw = [(key, v * width / total) for key, v in self.values]
        cells = {key: int(x) for key, x in raw}
        rest = width - sum(cells.values())
        for key, x in sorted(raw, key=lambda kv: kv[1] - int(kv[1]), reverse=True)[:rest]:
            cells[key] += 1
        for key, _ in self.values:
            if cells[key]:
                text.append(glyphs[key] * cells[key], styles[key])
        text.append("\n")
        # The legend breaks between its entries, never inside one ("mmapped 1.85" / "MiB").
        legend = [Text.assemble((f"{glyphs[key] if no_color else '■'} ", styles[key]), f"{label} {fmt_bytes(value)}")
                  for key, label, _ in SEGMENTS if (value := dict(self.values).get(key, 0))]
        text.append_text(flow(legend, width, "  "))
        return text


def layer_table(report: LayerReport) -> Table:
    rss = report.rss_bytes
    table = Table(box=None, padding=(0, 1), show_header=True, header_style="bold", expand=False)
    table.add_column("layer")
    table.add_column("bytes", justify="right")
    table.add_column("of RSS", justify="right")
    table.add_column("source / note", overflow="fold")

    def row(label: str, value: int | None, source: str, indent: int = 0, of_rss: bool = True):
        share = fmt_percent(value / rss) if of_rss and value is not None and rss else ""
        # Text, not str: a str cell is parsed as Rich markup and "[heap]" would vanish.
        table.add_row(Text(" " * indent + printable(label)), Text(fmt_bytes(value)), Text(share), Text(printable(source)))

    row("RSS", rss, "status VmRSS", of_rss=False)
    row("file-backed", report.file_bytes, "status RssFile", 2)
    row("anonymous", report.anon_bytes, "status RssAnon", 2)
    unknown = split_unknown_reason(report)
    for layer in report.anon_split:
        row(layer.label, layer.bytes, layer.note or layer.source, 4)
        # Each heap place's resident pages, split; the three add up to the row above.
        for part in report.heap_split:
            if part.parent == layer.key:
                row(part.label, part.bytes, part.source, 6)
        if layer.key == "brk" and unknown:
            row("in use / free / top", None, f"unknown: {unknown}", 6)
    row("shmem", report.shmem_bytes, "status RssShmem", 2)
    row("LazyFree", report.lazyfree_bytes, "smaps_rollup LazyFree (in RSS, reclaimable)")
    row("Swap", report.swap_bytes, "status VmSwap (not in RSS)", of_rss=False)
    return table


def heap_lines(report: LayerReport, width: int = 120) -> Text:
    """What the walk says of the heap, in lines of ``width`` that break between words, never
    between a figure and its unit."""
    heap = report.heap
    words: list = []
    if heap is None:
        return Text()
    newline = Text("\n")
    if heap.valid:
        words.append(Text(f"malloc_trim(0) would release {fmt_bytes(heap.trim_release_bytes)} of RSS now", "bold"))
        glibc = figure_words(
            f"glibc {heap.glibc_version}: heap {fmt_bytes(heap.system_bytes)}, in use {fmt_bytes(heap.in_use_bytes)}, "
            f"free {fmt_bytes(heap.free_bytes + heap.fastbin_bytes)}, top {fmt_bytes(heap.top_bytes)}, "
            f"mmapped {fmt_bytes(heap.mmapped_bytes)}; {counted(len(heap.arenas), 'arena')}, "
            f"{heap.chunks_walked:,} chunks walked in {heap.walk_seconds:.2f} s")
        words += [("   ", glibc[0][1]), *glibc[1:], newline]
        pin = heap.pin
        if pin is not None and pin.pinned_bytes > 0:  # a pin with nothing free below it holds nothing
            words += figure_words(
                f"pin: a {'tcache ' if pin.is_tcache else ''}chunk of {fmt_bytes(pin.size)} at 0x{pin.address:x}, "
                f"{fmt_bytes(pin.distance_below_top)} below the end of the brk heap; "
                f"{fmt_bytes(pin.pinned_bytes)} free right below it"
                + (f" ({fmt_bytes(pin.pinned_resident_bytes)} resident)" if pin.pinned_resident_bytes is not None else "")
                + " cannot go back by shrinking brk")
            words.append(newline)
    else:
        words += figure_words(f"allocator: {heap.allocator_kind}{' ' + heap.glibc_version if heap.glibc_version else ''}: "
                              f"{heap.status}: {printable(heap.reason)}")
        words.append(newline)
        last = heap.last_valid
        if last is not None:
            words += figure_words(
                f"last valid walk ({fmt_duration(heap.last_valid_age_s)} ago): malloc_trim(0) would have released "
                f"{fmt_bytes(last.trim_release_bytes)}; heap {fmt_bytes(last.system_bytes)}, "
                f"in use {fmt_bytes(last.in_use_bytes)}")
            words.append(newline)
    return flow(words, width)


class FindingsView(Static):
    """The findings, one paragraph each, severity shown through component classes."""

    COMPONENT_CLASSES = {"findings--info", "findings--warning", "findings--critical", "findings--next"}

    def show(self, report: LayerReport | None) -> None:
        text = Text()
        for finding in report.findings if report else ():
            text.append(f"[{finding.severity.value}] ", self.get_component_rich_style(f"findings--{finding.severity.value}"))
            text.append(printable(finding.text) + "\n")
            if finding.next_step:
                text.append(f"    next: {printable(finding.next_step)}\n", self.get_component_rich_style("findings--next"))
        text.rstrip()
        self.update(text)


class LayersTab(TabView):
    TAB_TITLE = "Layers"
    TAB_ID = "layers"
    TAB_ABOUT = ("for one process, from RSS down: kernel, glibc heap (in use / free kept / top), runtime; "
                 "what malloc_trim would release now")
    FIGURE_SOURCES = (
        ("RSS, file-backed, anonymous, shmem, Swap", "/proc/PID/status VmRSS, RssFile, RssAnon, RssShmem, VmSwap"),
        ("PSS, Private_Dirty, LazyFree", "/proc/PID/smaps_rollup"),
        ("brk heap, thread heaps, stacks, other anon", "/proc/PID/smaps Anonymous: per mapping (the heap mapping, the "
                                                       "walk's heaps, the stack mapping and mappings holding a thread's "
                                                       "SP from task/TID/syscall)"),
        ("mmapped malloc chunks", "IS_MMAPPED chunk headers read through /proc/PID/mem, resident pages from pagemap; "
                                  "checked against glibc mp_.mmapped_mem"),
        ("heap in use / free / top", "read-only walk of every glibc chunk through /proc/PID/mem (arena list from "
                                     "main_arena, found by libc6-dbg symbols or heuristics); resident pages from pagemap"),
        ("malloc_trim(0) would release", "glibc mtrim simulated: fastbins consolidated, madvise of whole pages in free "
                                         "chunks, systrim of the main top; only pages pagemap marks present"),
        ("pin", "the busy chunk right below the consolidated top of the brk heap"),
        ("runtime", "/proc/PID/maps (libpython, libjvm, libnode...), the exe name, Go's ELF build note"),
    )
    TAB_KEYS = (("r", "walk the heap again now"),)
    TRIMS = True

    BINDINGS = [Binding("r", "refresh_now", "Walk again")]

    PARTS = ("layers",)

    def __init__(self, **kw):
        super().__init__(**kw)
        self.target: ProcessIdentity | None = None
        self.report: LayerReport | None = None
        self._drawn = None
        self._laid_out_width: int | None = None  # the tab's width when the title and heap lines were laid out

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="layers-body"):
            yield Static("", id="layers-title")
            yield ProgressBar(total=100, show_eta=False, id="layers-progress")
            yield LayerBar(id="layers-bar")
            yield Static("", id="layers-heap")
            yield Static("", id="layers-table")
            yield FindingsView("", id="layers-findings")

    def on_mount(self) -> None:
        self.query_one("#layers-progress").display = False
        self._show_empty()

    def on_show(self) -> None:
        # Focus the body when the tab is shown, so that r and the scroll keys reach it.
        self.focus_when_shown(self.query_one("#layers-body"))

    # --- what the app calls ------------------------------------------------------
    def show_target(self, target: ProcessIdentity | None) -> None:
        if target == self.target:
            return
        self.target = target
        self.report = None
        self._drawn = None
        self._show_empty()
        if self.is_attached:
            self.app.refresh_bindings()

    def show_sample(self, sample: Sample) -> None:
        result = sample.result("layers")
        if result is None or result is self._drawn:
            if result is None and self.replaying and self.target is not None:
                self.query_one("#layers-title", Static).update(f"PID {self.target.pid}: layers {NOT_RECORDED}")
            return
        self._drawn = result
        if result.key != self.target:
            return  # read for the previous selection
        bar = self.query_one("#layers-progress", ProgressBar)
        if result.running and result.progress is not None and result.value is None:
            done, total = result.progress
            bar.display = True
            bar.update(total=max(1, total), progress=done)
            self.query_one("#layers-title", Static).update(
                f"walking the heap of PID {self.target.pid}: {fmt_bytes(done)} of {fmt_bytes(total)}")
            return
        bar.display = False
        if result.error:
            self.query_one("#layers-title", Static).update(Text(f"the heap walk failed: {printable(result.error)}"))
        elif result.value is not None and result.value is not self.report:
            self.report = result.value
            self._show(result.value)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "refresh_now":  # r walks the selected process's heap: none selected, or replay
            return self.target is not None and not self.replaying
        return super().check_action(action, parameters)

    def action_refresh_now(self) -> None:
        if self.target is not None:
            self.app.collector.refresh("layers")

    # --- drawing ----------------------------------------------------------------------
    def _text_width(self) -> int:
        """The width the title and heap lines are laid out for (the tab's, less its padding)."""
        return max(20, self.query_one("#layers-heap", Static).content_region.width or self.size.width or 120)

    def on_resize(self, event: events.Resize) -> None:
        # The title and heap lines were laid out for the old width: again for the new one.
        if self.report is not None and event.size.width != self._laid_out_width:
            self._laid_out_width = event.size.width
            self._show(self.report)

    def _show_empty(self) -> None:
        if self.target is None:
            title = "No process selected: pick one in the Processes tab (Enter opens it here)."
        else:
            title = f"PID {self.target.pid}: reading its memory layers…"
        self.query_one("#layers-title", Static).update(title)
        # A walk's progress bar belongs to the process it walks: the next one shows its own.
        self.query_one("#layers-progress", ProgressBar).display = False
        self.query_one(LayerBar).show([])
        for name in ("#layers-table", "#layers-heap"):
            self.query_one(name, Static).update("")
        self.query_one(FindingsView).show(None)

    def _show(self, report: LayerReport) -> None:
        heap = report.heap
        state = "heap valid" if heap is not None and heap.valid else f"heap {heap.status if heap else '?'}"
        if heap is not None and heap.status == "self":
            state = "this is memtop itself: heap not walked"
        command = printable(" ".join(report.cmdline.split()) or f"[{report.comm}]", 48)
        title = self.query_one("#layers-title", Static)
        if report.identity is None and self.target is not None:
            # Its stat could not be read: the selected process is gone (as Arenas says it), not
            # a "PID ?" (the fresh-eyes report).
            title.update(Text.assemble((f"PID {self.target.pid} ", "bold"),
                                       printable(report.kernel_reason or "cannot be read"),
                                       ": its layers can no longer be read"))
        else:
            # A narrow pane breaks the line between figures, not inside one ("PSS" / "38.0 MiB").
            title.update(flow([Text.assemble((f"PID {report.identity.pid if report.identity else '?'} ", "bold"), command),
                               Text(f"RSS {fmt_bytes(report.rss_bytes)}"), Text(f"PSS {fmt_bytes(report.pss_bytes)}"),
                               Text(f"({state})")], self._text_width(), "  "))
        kernel_thread = heap is not None and heap.status == "kernel-thread"
        self.query_one(LayerBar).show(bar_values(report), "RSS 0 B: a kernel thread has no user address space"
                                      if kernel_thread and report.rss_bytes == 0 else "RSS unknown")
        self.query_one("#layers-table", Static).update(layer_table(report))
        self.query_one("#layers-heap", Static).update(heap_lines(report, self._text_width()))
        self.query_one(FindingsView).show(report)
