"""``memtop replay FILE``: the memtop app on recorded ticks instead of a live sampler.

:class:`ReplayApp` is :class:`~memtop.tui.app.MemtopApp` with no sampler thread: a worker loads a
tick from the :class:`~memtop.collect.recording.RecordReader` and the app hands it to the visible tab
as a :class:`~memtop.model.sample.Sample` (:func:`recorded_sample`), the very thing the live
Collector hands the tabs. A part the file does not hold for a tick is absent from the sample and
its tab says so; nothing is collected live, so nothing live is ever mixed with recorded figures.
Actions are disabled: they would act on the machine now.

Time: ``,`` ``.`` step one tick, ``<`` ``>`` the first and last tick, ``c`` the largest RSS
change of the selected process between two consecutive ticks (again: the next largest), ``C``
the same for memory used machine-wide (MemTotal - MemAvailable), ``p`` plays at the recorded
pace. At the last tick of a file that is still being written, replay follows it.
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from types import MappingProxyType

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.widgets import Footer, Static

from memtop.format import fmt_bytes, fmt_duration
from memtop.collect.recording import RecordedTick, RecordFileError, RecordReader
from memtop.tui.app import GLOBAL_KEYS, MemtopApp
from memtop.text import printable
from memtop.tui.screens import HelpScreen
from memtop.tui.tab import TabView
from memtop.model.pagecache import VmstatView
from memtop.model.pressure import CgroupsView, PsiHistory
from memtop.model.process import ProcessIdentity
from memtop.model.sample import PartResult, Sample

TIME_FORMAT = "%Y-%m-%d %H:%M:%S"

REPLAY_KEYS = (
    (", .", "one tick back / forward"),
    ("< >", "the first / the last tick in the file"),
    ("c", "the largest RSS change of the selected process between two ticks (again: the next largest)"),
    ("C", "the largest change of memory used machine-wide, MemTotal − MemAvailable (again: the next)"),
    ("p", "play / pause, one tick per recorded interval"),
)
# Keys of the live app that mean nothing here (or act on the machine now) are left out of help.
_LIVE_ONLY = {"p", "+ -", "t", "e", "D"}


class TickLoaded(Message):
    def __init__(self, tick: RecordedTick, request: int):
        super().__init__()
        self.tick = tick
        self.request = request


class ReplayProblem(Message):
    def __init__(self, text: str):
        super().__init__()
        self.text = text


class FileRefreshed(Message):
    """The reader re-read the tick list (a file still being written grew, or the bound cut it)."""

    def __init__(self, count: int, index: int | None):
        super().__init__()
        self.count = count
        self.index = index  # where the shown tick is now, None if the bound dropped it


class ChangesReady(Message):
    def __init__(self, key: tuple, ranked: list[int], deltas: dict[int, int], what: str):
        super().__init__()
        self.key = key
        self.ranked = ranked
        self.deltas = deltas
        self.what = what


# What of a tick each tab draws beyond the processes (decoded only for the tab shown).
_TAB_PARTS = {"kernel": frozenset({"kernel"}), "pressure": frozenset({"pressure"}),
              "pagecache": frozenset({"files", "vmstat_rates"}),
              "tmpfs": frozenset({"tmpfs"}), "layers": frozenset({"layers"}), "arenas": frozenset({"arenas"}),
              "containers": frozenset({"containers"})}
FD_TABLE_NOT_RECORDED = "fd tables are not recorded in this file (memtop record keeps each process's fd count)"


def recorded_sample(tick: RecordedTick, target: ProcessIdentity | None) -> Sample:
    """A recorded tick as the Sample the tabs render: the processes, and the parts the file
    holds for it (kernel, PSI, cgroups); a part it does not hold is absent (the tab says so)."""
    parts: dict[str, PartResult] = {}

    def result(value) -> PartResult:
        return PartResult(value, tick.snapshot.tick, tick.snapshot.system.monotonic, 0.0,
                          target.pid if target is not None else None)

    if tick.kernel is not None:
        parts["kernel"] = result(replace(tick.kernel, target_pid=target.pid if target else None,
                                         fd_breakdown=None, fd_breakdown_reason=FD_TABLE_NOT_RECORDED))
    pressure = tick.pressure
    if pressure is not None:
        parts["psi"] = result(PsiHistory(tuple(pressure.samples), pressure.unavailable_reason, live=False))
        selected = reason = None
        if target is not None:
            path = pressure.proc_cgroups.get(target.pid)
            selected = pressure.details.get(path) if path is not None else None
            if selected is None:
                reason = "not recorded for this process at this tick"
        if pressure.cgroup_version is not None and pressure.cgroup_mount is not None:
            view = CgroupsView(pressure.cgroup_version, pressure.cgroup_mount, pressure.tree or (),
                               target.pid if target else None, selected, reason, None,
                               MappingProxyType({k: MappingProxyType(dict(v)) for k, v in pressure.baselines.items()}))
        else:
            view = CgroupsView(None, None, error=pressure.cgroup_error or "cgroups not recorded")
        parts["cgroups"] = result(view)
    if tick.vmstat is not None and "vmstat_rates" in tick.parts:
        parts["vmstat"] = result(VmstatView(tick.vmstat_rates, tick.vmstat))
    # Sections stored when taken: the latest at or before the tick, with the tick it was taken at.
    for name, part in (("files", "system_files"), ("tmpfs", "tmpfs"), ("layers", "layers"), ("arenas", "arenas"),
                       ("containers", "containers")):
        taken = tick.taken.get(name)
        if taken is None:
            continue
        at, value = taken
        key = tick.target if name in ("layers", "arenas") else None
        if key is not None and target != key:
            continue  # the heap reports are of the recorded process only
        parts[part] = PartResult(value, tick.snapshot.tick, at, 0.0, key)
    return Sample(tick.snapshot, MappingProxyType(parts))


class ReplayBar(Static):
    """Where in the recording we are: tick n/N, its time, and the keys to move."""

    DEFAULT_CSS = """
    ReplayBar { height: 1; background: $boost; }
    """


class ReplayApp(MemtopApp):
    TITLE = "memtop replay"
    BINDINGS = [
        Binding("comma", "step(-1)", "Back", key_display=","),
        Binding("full_stop", "step(1)", "Fwd", key_display="."),
        Binding("less_than_sign", "edge(0)", "First", show=False, key_display="<"),
        Binding("greater_than_sign", "edge(1)", "Last", show=False, key_display=">"),
        Binding("c", "jump_change('process')", "ΔRSS", key_display="c"),
        Binding("C", "jump_change('machine')", "Δused", show=False),
        Binding("p", "pause", "Play"),
        Binding("plus,equals_sign", "interval(1)", "Interval", show=False),
        Binding("slash", "filter", "Filter", show=False, key_display="/"),
        Binding("s", "sort", "Sort", show=False),
    ]
    DEFAULT_CSS = """
    .not-recorded { padding: 1 2; color: $text-muted; }
    """

    def __init__(self, reader: RecordReader, *, pid: int | None = None, start_index: int = 0):
        if pid is None and reader.target is not None:
            pid = reader.target.pid  # `memtop record --pid`: its heap reports are what Layers shows
        super().__init__(interval=reader.interval_s, pid=pid, read_only=True, sample=False, psi_trigger="off")
        self.replay = reader
        self.recorded: RecordedTick | None = None
        self.position = max(0, min(len(reader) - 1, start_index))
        self.count = len(reader)
        self.playing = False
        self._request = 0
        self._jump: list | None = None  # [key, ranked indexes, deltas, what, next position]
        self._load_lock = threading.Lock()

    # --- layout and hooks of MemtopApp ---------------------------------------------------------
    def compose(self) -> ComposeResult:
        for widget in super().compose():
            if isinstance(widget, Footer):
                yield ReplayBar("", id="replay-bar")  # just above the key bar
            yield widget

    def refresh_tab(self, view: TabView) -> None:
        if self.recorded is None:
            return
        if self._parts_for(view) - self.recorded.parts:
            # This tab needs what the tick was loaded without (its Kernel or Pressure figures).
            self._load(self.position, self._next_request(), self._parts_for(view))
            return
        self._update_bar()
        if self.sample is not None:
            view.show_sample(self.sample)

    def select_process(self, view) -> None:
        super().select_process(view)
        if self.recorded is not None:  # the cgroup and fd figures shown depend on the selection
            self.present(recorded_sample(self.recorded, self.target), " at this tick")

    def update_wants(self) -> None:
        pass  # nothing is collected: the file holds what there is

    @staticmethod
    def _parts_for(view: TabView | None) -> frozenset[str]:
        """What of a tick the tab draws beyond the snapshot: rebuilt only for the tab shown."""
        return _TAB_PARTS.get(view.TAB_ID, frozenset()) if view is not None else frozenset()

    def on_mount(self) -> None:
        self._update_bar()
        self._load(self.position, self._next_request(), self._parts_for(self.active_tab()))
        # Each recorded interval: play one tick, or look for ticks a running recorder added.
        self.set_interval(max(0.5, self.replay.interval_s), self._on_timer)

    def _update_header(self) -> None:
        # Short: the header line must fit 80 columns; the bar below says which tick and when.
        self.query_one("#header").update(self.snapshot, "replay", "PLAYING" if self.playing else "")
        self._update_bar()

    def _update_bar(self) -> None:
        bar = self.query_one(ReplayBar)
        text = Text(f" tick {self.position + 1}/{self.count}", style="bold")
        if self.recorded is not None:
            text.append(f", {time.strftime(TIME_FORMAT, time.localtime(self.recorded.wall_time))}", style="bold")
        text.append(f"  every {self.replay.interval_s:g} s  {printable(self.replay.path.name, 60)}", style="")
        taken = self._taken_age()
        if taken:
            text.append(f"  {taken}", style="bold")
        # The keys, as long as they fit (at 120 columns with a file name and an age they were cut
        # at "largest"): the footer below has them too.
        width = bar.size.width or self.size.width
        for hint in ("   , . step  < > ends  c C largest change  p play", "   , . < > c C p"):
            if text.cell_len + len(hint) <= width:
                text.append(hint, style="dim")
                break
        bar.update(text)

    def _taken_age(self) -> str:
        """For a tab whose figures are stored only when taken (page cache and tmpfs every
        TAKEN_EVERY ticks, the heap reports at each walk): how long before the tick shown."""
        tick = self.recorded
        if tick is None:
            return ""
        for name in sorted(self._parts_for(self.active_tab())):
            taken = tick.taken.get(name)
            if taken is not None:
                age = tick.snapshot.system.monotonic - taken[0]
                label = {"files": "page cache", "tmpfs": "tmpfs", "containers": "containers"}.get(name, "heap")
                return f"{label} read {fmt_duration(age)} before" if age >= 0.5 else ""
        return ""

    # --- loading ---------------------------------------------------------------------------------
    def _next_request(self) -> int:
        self._request += 1
        return self._request

    @work(thread=True, exclusive=True, group="replay", exit_on_error=False)
    def _load(self, index: int, request: int, parts: frozenset[str]) -> None:
        with self._load_lock:  # one load at a time; a key held down must not pile them up
            if request != self._request:
                return  # a newer key press asked for another tick
            try:
                self.post_message(TickLoaded(self.replay.load(index, parts), request))
            except RecordFileError as e:
                self.post_message(ReplayProblem(str(e)))

    @on(TickLoaded)
    def _tick_loaded(self, message: TickLoaded) -> None:
        if message.request != self._request or self._stopping:
            return  # a newer key press asked for another tick
        tick = message.tick
        self.recorded = tick
        self.position = tick.index
        self.count = max(self.count, tick.count)
        self.present(recorded_sample(tick, self.target), " at this tick")

    @on(ReplayProblem)
    def _problem(self, message: ReplayProblem) -> None:
        self.playing = False
        self.notify(message.text, severity="error", timeout=10)
        self._update_header()

    def _on_timer(self) -> None:
        if self.playing:
            if self.position < self.count - 1:
                self._go(self.position + 1)
                return
        self._refresh_file(self.recorded.seq if self.recorded is not None else None)

    @work(thread=True, exclusive=True, group="replay-refresh", exit_on_error=False)
    def _refresh_file(self, seq: int | None) -> None:
        try:
            if not self.replay.refresh():
                return
        except Exception as e:  # noqa: BLE001 - sqlite3 errors of a file being replaced or damaged
            self.post_message(ReplayProblem(f"{self.replay.path}: cannot re-read it: {e}"))
            return
        seqs = self.replay.seqs
        index = None
        if seq is not None and seqs and seqs[0] <= seq:
            index = self.replay.index_at_or_before(seq)
        self.post_message(FileRefreshed(len(seqs), index))

    @on(FileRefreshed)
    def _file_refreshed(self, message: FileRefreshed) -> None:
        at_end = self.position >= self.count - 1
        self.count = message.count
        if message.index is None:
            self.notify("the recorder's size bound dropped the tick shown: going to the oldest one left")
            self._go(0)
        elif at_end and not self.playing:
            self._go(message.count - 1)  # at the last tick of a file being written: follow it
        else:
            self.position = message.index
            self._update_bar()

    def _go(self, index: int) -> None:
        index = max(0, min(self.count - 1, index))
        self.position = index
        self._update_bar()
        self._load(index, self._next_request(), self._parts_for(self.active_tab()))

    # --- keys ----------------------------------------------------------------------------------
    def action_step(self, delta: int) -> None:
        target = self.position + delta
        if target < 0 or target >= self.count:
            self.notify("the first tick in the file" if target < 0 else "the last tick in the file", timeout=2)
            return
        self._go(target)

    def action_edge(self, end: int) -> None:
        self._go(self.count - 1 if end else 0)

    def action_pause(self) -> None:
        self.playing = not self.playing
        if self.playing and self.position >= self.count - 1:
            self._go(0)
        self._update_header()

    def action_interval(self, step: int) -> None:
        self.notify(f"replay plays at the recorded interval ({self.replay.interval_s:g} s)", timeout=3)

    def action_jump_change(self, kind: str) -> None:
        if kind == "process":
            if self.target is None:
                self.notify("select a process first (Processes tab); C jumps on machine-wide memory used")
                return
            key = ("process", self.target, self.count)
        else:
            key = ("machine", None, self.count)
        if self._jump is not None and self._jump[0] == key:
            self._jump_next()
            return
        self._changes(key)

    @work(thread=True, exclusive=True, group="replay-jump", exit_on_error=False)
    def _changes(self, key: tuple) -> None:
        reader = self.replay
        try:
            if key[0] == "process":
                identity = key[1]
                series = reader.rss_series(identity.pid, identity.start_ticks)
                view = self.snapshot.by_pid(identity.pid) if self.snapshot else None
                what = f"RSS of PID {identity.pid}" + (f" ({view.sample.comm})" if view else "")
            else:
                series = list(enumerate(reader.used))
                what = "memory used machine-wide"
        except RecordFileError as e:
            self.post_message(ReplayProblem(str(e)))
            return
        values = dict(series)
        ranked = reader.largest_changes(series)
        before = {i1: v0 for (i0, v0), (i1, _) in zip(series, series[1:])}
        deltas = {i: values[i] - before[i] for i in ranked}
        self.post_message(ChangesReady(key, ranked, deltas, what))

    @on(ChangesReady)
    def _changes_ready(self, message: ChangesReady) -> None:
        if not message.ranked:
            self.notify(f"{message.what} never changed between two ticks in this file")
            return
        self._jump = [message.key, message.ranked, message.deltas, message.what, 0]
        self._jump_next()

    def _jump_next(self) -> None:
        key, ranked, deltas, what, n = self._jump
        index = ranked[n % len(ranked)]
        self._jump[4] = n + 1
        when = ""
        if 0 < index < len(self.replay.walls):
            when = (f" between {time.strftime('%H:%M:%S', time.localtime(self.replay.walls[index - 1]))}"
                    f" and {time.strftime('%H:%M:%S', time.localtime(self.replay.walls[index]))}")
        self.notify(f"{'largest' if n % len(ranked) == 0 else f'#{n % len(ranked) + 1} largest'} change of {what}: "
                    f"{fmt_bytes(deltas[index], signed=True)}{when} ({len(ranked)} changes; "
                    f"{'c' if key[0] == 'process' else 'C'} again: the next)", timeout=6)
        self._go(index)

    # --- what replay refuses ---------------------------------------------------------------------------
    def _refuse(self, what: str) -> None:
        self.notify(f"replay: {what} is disabled. These are recorded figures, not the machine now; "
                    "run memtop (live) to act.", severity="warning", timeout=5)

    def action_trim(self) -> None:
        self._refuse("trim (malloc_trim)")

    def action_evict(self) -> None:
        self._refuse("evict (page cache)")

    def action_drop_caches(self) -> None:
        self._refuse("drop caches")

    def action_help(self) -> None:
        tab = self.active_tab()
        keys = REPLAY_KEYS + tuple(k for k in GLOBAL_KEYS if k[0] not in _LIVE_ONLY)
        self.push_screen(HelpScreen(tab.TAB_TITLE, tab.FIGURE_SOURCES, tab.TAB_KEYS, keys, tab.TAB_ABOUT))

    async def action_quit(self) -> None:
        self.playing = False
        await super().action_quit()
