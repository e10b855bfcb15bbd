"""The memtop Textual app: header, eight tabs, footer. A sampler thread ticks the Collector
(memtop/collect/collector.py) and the app shows the samples it builds."""

from __future__ import annotations

import asyncio
import gc
import importlib
from collections import deque
from dataclasses import dataclass
import os
import signal
import threading
import time
from pathlib import Path

from textual import events, on, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.css.query import NoMatches
from textual.message import Message
from textual.widgets import Static, TabbedContent, TabPane
from textual.worker import Worker, WorkerState, get_current_worker

from memtop.collect.collector import PROC, Collector
from memtop.collect.parts import OomSentinel, default_parts
from memtop.collect.psiwatch import PsiWatch
from memtop.collect.sampler import DEFAULT_INTERVAL_S, IDLE_EVERY, ROLLUP_DUTY, Sampler
from memtop.model.pressure import StallEvent, TriggerSpec
from memtop.model.process import ProcessIdentity, ProcessView
from memtop.model.sample import Sample
from memtop.model.snapshot import Snapshot
from memtop.text import printable
from memtop.tui.driver import TerminalLost
from memtop.tui import ownheap
from memtop.tui.header import MemoryHeader
from memtop.tui.pressure import PressureBanner, PressureTab, stall_line
from memtop.tui.processes import ProcessesTab
from memtop.tui.screens import HelpScreen
from memtop.tui.tab import TabsContent, TabView
from memtop.tui.widgets import KeysFooter


@dataclass(frozen=True)
class TabSpec:
    """A tab as the app lists it, before its module is imported: the first screen needs only the
    Processes tab, and the others (their modules, widgets and styles) are built when first shown
    (start-up, issue 20 item 3). tests/tui/test_app.py checks each against its class."""

    id: str
    title: str
    module: str
    name: str
    short: str = ""  # the tab bar's label below FULL_TAB_BAR_WIDTH columns (else the title)

    def label(self, number: int, short: bool = False) -> str:
        return f"{number} {self.short if short and self.short else self.title}"

    def load(self) -> type[TabView]:
        return getattr(importlib.import_module(self.module), self.name)


TABS: tuple[TabSpec, ...] = (
    TabSpec("processes", "Processes", "memtop.tui.processes", "ProcessesTab", "Procs"),
    TabSpec("layers", "Layers", "memtop.tui.layers", "LayersTab"),
    TabSpec("arenas", "Arenas", "memtop.tui.arenas", "ArenasTab"),
    TabSpec("pagecache", "Page cache", "memtop.tui.pagecache", "PageCacheTab", "Cache"),
    TabSpec("kernel", "Kernel", "memtop.tui.kernel", "KernelTab"),
    TabSpec("tmpfs", "tmpfs", "memtop.tui.tmpfs", "TmpfsTab"),
    TabSpec("pressure", "Pressure", "memtop.tui.pressure", "PressureTab", "PSI"),
    TabSpec("containers", "Containers", "memtop.tui.containers", "ContainersTab"),
)
TABS_BY_PANE = {f"tab-{spec.id}": spec for spec in TABS}
# Columns the tab bar needs for every full title (each label is padded by one column each side);
# narrower, three tabs show their short labels so that all eight fit 80 columns.
FULL_TAB_BAR_WIDTH = sum(len(spec.label(i + 1)) + 2 for i, spec in enumerate(TABS))


def tab_classes() -> tuple[type[TabView], ...]:
    """Every tab's class, in the app's order (imports them all)."""
    return tuple(spec.load() for spec in TABS)
INTERVALS_S = (0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 30.0)
MIN_WIDTH, MIN_HEIGHT = 80, 24

GLOBAL_KEYS = (
    ("1-8", "switch tabs"),
    ("q", "quit"),
    ("?", "this help"),
    ("/", "filter"),
    ("s", "choose the sort column"),
    ("p", "pause / resume sampling"),
    ("+ -", "longer / shorter refresh interval"),
    ("Enter", "open the selected process in Layers"),
    ("t", "trim the selected process's heap: malloc_trim(0) through gdb (Processes, Layers)"),
    ("e", "evict the selected file from the page cache (Page cache)"),
    ("D", "drop caches machine-wide (root; asks you to type drop)"),
    ("A", "the actions log"),
)


class SampleReady(Message):
    """Posted from the sampler thread with each tick, and from the Collector's workers when a
    part has a new result (or progress) between ticks."""

    def __init__(self, sample: Sample):
        super().__init__()
        self.sample = sample


class StallSeen(Message):
    """The PSI watcher saw a stall (posted from its thread)."""

    def __init__(self, event: StallEvent):
        super().__init__()
        self.event = event


class TriggerChanged(Message):
    def __init__(self, armed: bool, text: str, spec: TriggerSpec | None):
        super().__init__()
        self.armed, self.text, self.spec = armed, text, spec


@dataclass
class StallLogEntry:
    """Stalls closer together than COALESCE_S make one line of the log."""

    first: float
    last: float
    count: int
    event: StallEvent


STALL_LOG_LINES = 50
COALESCE_S = 10.0


def live_sampler(root: Path) -> Sampler:
    """The live view's Sampler: costly rollups and long-idle processes off screen read less often
    (ROLLUP_DUTY, IDLE_EVERY: memtop/collect/sampler.py)."""
    return Sampler(root, rollup_duty=ROLLUP_DUTY, idle_every=IDLE_EVERY)


def _pane_view(pane: TabPane) -> TabView | None:
    """The tab mounted in ``pane`` (its child): not a query of the pane's whole subtree, which
    cost 1 ms of every tick with the Processes tab's widgets (py-spy, issue 20)."""
    return next((child for child in pane.children if isinstance(child, TabView)), None)


class MemtopApp(App):
    CSS_PATH = "app.tcss"
    TITLE = "memtop"
    ENABLE_COMMAND_PALETTE = False

    BINDINGS = [
        Binding("1", "tab(0)", "Tabs", key_display="1-8"),
        *(Binding(str(i + 1), f"tab({i})", show=False) for i in range(1, len(TABS))),
        Binding("q", "quit", "Quit"),
        Binding("ctrl+c", "quit", "Quit", show=False, priority=True),  # as in top and htop
        Binding("question_mark", "help", "Help", key_display="?"),
        # `/` is bound by each tab (memtop/tui/tab.py: a priority binding, shown in the footer);
        # this one answers when nothing has the focus.
        Binding("slash", "filter", "Filter", key_display="/", show=False),
        Binding("s", "sort", "Sort"),
        Binding("p", "pause", "Pause"),
        Binding("p", "resume", "Resume"),  # the footer says what p does now (check_action)
        Binding("plus,equals_sign", "interval(1)", "Interval", key_display="+/-"),
        Binding("minus", "interval(-1)", "Faster", show=False),
        Binding("enter", "open_layers", "Layers", key_display="⏎"),
        # Shown where they act (check_action): t on Processes and Layers, e on Page cache.
        Binding("t", "trim", "Trim"),
        Binding("e", "evict", "Evict"),
        Binding("D", "drop_caches", "Drop caches"),
        Binding("A", "actions_log", "Actions"),
    ]

    def __init__(self, *, root: Path = PROC, interval: float = DEFAULT_INTERVAL_S, pid: int | None = None,
                 read_only: bool = False, sample: bool = True, sampler: Sampler | None = None,
                 psi_trigger: str | None = None, collector: Collector | None = None,
                 part_workers: int | None = None, lazy_tabs: bool = True):
        """``sample=False`` starts no sampler thread: tests call :meth:`tick` themselves, and the
        parts run in the ticking thread unless ``part_workers`` says how many threads."""
        # NO_COLOR (https://no-color.org): no colour at all. Textual alone only greys colours out
        # (its Monochrome filter still writes 256-colour codes); with ansi_color it strips every
        # colour (its NoColor filter) and app.tcss marks state with bold, reverse and underline.
        super().__init__(ansi_color="NO_COLOR" in os.environ)
        if psi_trigger is None and not sample:
            # Tests feed their own snapshots: a stall elsewhere on the machine must not put a
            # banner on their screens. A test of the trigger asks for one.
            psi_trigger = "off"
        self.psi_trigger = psi_trigger  # the Pressure tab's PSI trigger ("some 100000 1000000", "off")
        self.root = Path(root)
        self.collector = collector or Collector(
            self.root, parts=default_parts(self.root), sampler=sampler or live_sampler(self.root),
            workers=part_workers if part_workers is not None else 2 if sample else 0,
            on_update=lambda s: self.post_message(SampleReady(s)))
        self.collector.interval_s = interval
        self.interval = interval
        self.sample: Sample | None = None
        # PSI trigger state and the stall log (memtop/collect/psiwatch.py feeds them).
        self.trigger_armed = False
        self.trigger_text = "trigger: starting"
        self.trigger_spec: TriggerSpec | None = None
        self.stall_log: deque[StallLogEntry] = deque(maxlen=STALL_LOG_LINES)
        # memtop's own actions, marked on the RSS chart (memtop/tui/actions.py ActionMark)
        self.action_marks: deque = deque(maxlen=50)
        self._psi_watch: PsiWatch | None = None
        self.paused = False
        self.read_only = read_only
        self.snapshot: Snapshot | None = None
        self.target: ProcessIdentity | None = None
        self._initial_pid = pid
        self._wake = threading.Event()
        self._stopping = False
        self._short_tab_labels = False  # the tab bar's labels (_check_size)
        self.freeze_gc_after_start = False  # run_app sets it (see _freeze_gc)
        self.trim_own_heap_s: float | None = None  # run_app sets it: memtop/tui/ownheap.py
        # A tab switch let go of the hidden tab's rendered lines (TabView.on_hide): trim at the
        # next tick rather than up to a minute later (the sampler's loop).
        self.own_trim_due = False
        self._sample = sample
        self.oom_sentinel = OomSentinel(self.root)  # when the OOM watch reads on a hidden tab
        self.replay = None  # a RecordReader in `memtop replay` (memtop/tui/replay.py)
        self.lost_terminal: str | None = None  # why the app exited without its terminal
        # Tabs other than Processes are built when first shown (False: all at start; the
        # screenshot script and tests that read a tab before showing it).
        self.lazy_tabs = lazy_tabs

    def get_driver_class(self):
        # Textual's driver with an input thread that sleeps until a key (memtop/tui/driver.py).
        from memtop.tui.driver import driver_class

        return driver_class() or super().get_driver_class()

    # --- layout -----------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield MemoryHeader(id="header")
        yield PressureBanner(id="pressure-banner")
        with TabsContent(id="tabs"):
            for i, spec in enumerate(TABS):
                with TabPane(spec.label(i + 1), id=f"tab-{spec.id}"):
                    if i == 0 or not self.lazy_tabs:
                        yield self._new_view(spec)
        yield Static("", id="too-small")
        yield KeysFooter(compact=True)  # compact: every key that acts fits 120 columns

    def on_mount(self) -> None:
        self._check_size()
        self.update_wants()
        if self._sample:
            if self.sampler.first_ready:
                # run_app read the first tick before Textual started: shown before the first
                # paint, the first screen is the full table, not an empty one a tick later.
                self.present(self.collector.tick())
                self.run_sampler(wait_first=True)
            else:
                self.run_sampler()
        if self.replay is None:
            self._start_psi_watch()
        # Whatever the parent did with SIGHUP (nohup, `trap '' HUP`: an ignored SIGHUP is
        # inherited), a hung-up terminal ends memtop; SIGTERM quits cleanly too.
        loop = asyncio.get_running_loop()
        for sig, reason in ((signal.SIGHUP, "SIGHUP: the terminal hung up"), (signal.SIGTERM, "SIGTERM")):
            try:
                loop.add_signal_handler(sig, lambda reason=reason: self.post_message(TerminalLost(reason)))
            except (RuntimeError, ValueError):  # not the main thread (tests run apps elsewhere)
                pass

    @on(TerminalLost)
    def _terminal_lost(self, message: TerminalLost) -> None:
        """The terminal went away (memtop/tui/driver.py, SIGHUP, or the tick's check): exit, never
        spin on a dead terminal as an orphan. Exit status 129, as a shell gives after SIGHUP."""
        self.lost_terminal = message.reason
        self._stopping = True
        self._wake.set()
        self.exit(return_code=129)
        threading.Thread(target=self._exit_without_terminal, name="memtop-lost-terminal", daemon=True).start()

    def _exit_without_terminal(self, grace_s: float = 5.0) -> None:
        """A last resort when the terminal is gone: if the clean exit has not ended the process
        in ``grace_s`` (Textual's shutdown writes to the dead terminal and may hang), end it.
        Never while an action runs: gdb must not be cut off in the middle of a call into a
        process (every action has its own timeout)."""
        while any(w.is_running and (w.group or "").startswith("actions") for w in list(self.workers)):
            time.sleep(0.2)
        time.sleep(grace_s)
        os._exit(129)

    def on_resize(self, event: events.Resize) -> None:
        # The event's size: self.size may still be the previous one here.
        self._check_size(event.size)

    def _check_size(self, size=None) -> None:
        width, height = size or self.size
        small = width < MIN_WIDTH or height < MIN_HEIGHT
        note = self.query_one("#too-small", Static)
        note.update(f"The terminal is {width}x{height}; memtop needs at least {MIN_WIDTH}x{MIN_HEIGHT}. Enlarge it, or press q.")
        self.screen.set_class(small, "-too-small")
        short = width < FULL_TAB_BAR_WIDTH
        if short != self._short_tab_labels:
            self._short_tab_labels = short
            tabs = self.query_one(TabbedContent)
            for i, spec in enumerate(TABS):
                tabs.get_tab(f"tab-{spec.id}").label = spec.label(i + 1, short)

    @property
    def sampler(self) -> Sampler:
        return self.collector.sampler

    def _start_psi_watch(self) -> None:
        self._psi_watch = PsiWatch.from_text(self.psi_trigger, root=self.root, latest=lambda: self.collector.latest,
                                   on_state=lambda *state: self.post_message(TriggerChanged(*state)),
                                   on_stall=lambda event: self.post_message(StallSeen(event))).start()

    @on(TriggerChanged)
    def _trigger_changed(self, message: TriggerChanged) -> None:
        self.trigger_armed, self.trigger_text, self.trigger_spec = message.armed, message.text, message.spec
        self._refresh_pressure_tab()

    @on(StallSeen)
    def _stall_seen(self, message: StallSeen) -> None:
        event = message.event
        last = self.stall_log[-1] if self.stall_log else None
        if last is not None and event.wall_time - last.last < COALESCE_S:
            last.last, last.count, last.event = event.wall_time, last.count + 1, event
        else:
            self.stall_log.append(StallLogEntry(event.wall_time, event.wall_time, 1, event))
        self.log.warning(stall_line(event))
        self.query_one(PressureBanner).show_alert(stall_line(event, short=True))
        self._refresh_pressure_tab()

    def _refresh_pressure_tab(self) -> None:
        for tab in self.query(PressureTab):  # none until the tab is first shown
            tab.show_stalls()

    def update_wants(self) -> None:
        """Ask the Collector for what the active tab shows, and PSI and /proc/vmstat always: their
        charts (Pressure, Page cache) need the history, a reading is one small file (~0.3 ms),
        and a tab opened late shows the minutes before it at once, drawn once (its charts were
        redrawn as their span grew, most of the Page cache tab's cost in its first minute)."""
        tab = self.active_tab()
        self.collector.want("tui", ("psi", "vmstat", *(tab.parts() if tab is not None else ())))

    def tick(self) -> Sample:
        """One tick: the Collector samples; the sample is shown. The sampler thread calls it;
        tests call it directly (with ``sample=False`` the parts run in this thread).

        Whatever tab is shown, the containers part is read when the OomSentinel says (a kill
        moved /proc/vmstat's oom_kill, or a baseline is due): the OOM watch then lists a kill that
        happened before the Containers tab was opened. Asked for after the tick, a reading
        starts from this tick's processes (with workers; at the next tick without)."""
        sample = self.collector.tick()
        if self.replay is None:
            self.collector.want("oom-watch", self.oom_sentinel.wants(self.collector, sample))
        self.post_message(SampleReady(sample))
        return sample

    # --- the sampler --------------------------------------------------------------
    @work(thread=True, exclusive=True, group="sampler", exit_on_error=False)
    def run_sampler(self, wait_first: bool = False) -> None:
        """Sample on every tick and post the sample; the UI never waits for /proc. ``wait_first``:
        the first tick is on screen already (on_mount), the next one comes an interval later."""
        worker = get_current_worker()
        # A safety net under the driver's check (Textual's own driver, for other versions, spins
        # on a dead terminal): once a tick, is the terminal memtop started on still one?
        tty_fd = next((fd for fd in (0, 1) if os.isatty(fd)), None) if not self.is_headless else None
        trimmed = time.monotonic()
        if wait_first:
            self._wake.wait(self.interval)
            self._wake.clear()
        while not worker.is_cancelled and not self._stopping:
            if tty_fd is not None and not os.isatty(tty_fd):
                self.post_message(TerminalLost("the terminal is gone (no longer a tty)"))
                return
            if not self.paused:
                self.tick()
            if self.trim_own_heap_s is not None and (self.own_trim_due or time.monotonic() - trimmed >= self.trim_own_heap_s):
                trimmed = time.monotonic()
                self.own_trim_due = False
                ownheap.clear_render_caches()
                ownheap.trim()
            self._wake.wait(self.interval)
            self._wake.clear()

    def notify(self, message: str, *, title: str = "", severity="information", timeout: float | None = None,
               markup: bool = True) -> None:
        """Every notification is plain text, and names, paths and errors in it are other users':
        never markup, and nothing in it may act on the terminal (widgets' notify comes here too)."""
        super().notify(printable(message), title=printable(title), severity=severity, timeout=timeout, markup=False)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state == WorkerState.ERROR:
            self.notify(f"{event.worker.name} failed: {event.worker.error!r}", severity="error", timeout=10)

    async def action_quit(self) -> None:
        # Wake the sampler so that it sees the stop now, not after up to a whole interval.
        self._stopping = True
        self._wake.set()
        self.exit()

    def on_unmount(self) -> None:
        self._stopping = True  # the sampler thread ends after its tick in flight (close waits for it)
        self._wake.set()
        if self._psi_watch is not None:
            self._psi_watch.stop()
        self.collector.close()

    @on(SampleReady)
    def _sample_ready(self, message: SampleReady) -> None:
        if self._stopping or not self.is_running:
            # A tick that arrives while the app shuts down (by q, or closed by its runner: its
            # screens may be gone already, seen in CI under load): nothing to show.
            return
        sample = message.sample
        if self.sample is not None and sample.tick < self.sample.tick:
            return  # a part's result composed before the newer tick arrived
        self.present(sample)

    def present(self, sample: Sample, missing_pid_note: str = "") -> None:
        """Show a sample: the header, the active tab, and the ``--pid`` selection once."""
        new_tick = self.sample is None or sample.processes is not self.sample.processes
        self.sample = sample
        self.snapshot = sample.processes
        if new_tick:
            self._update_header()
        active = self.active_tab()
        if active is not None:
            self.refresh_tab(active)
        if self._initial_pid is not None:
            pid, self._initial_pid = self._initial_pid, None
            if not self.query_one(ProcessesTab).table.select_pid(pid):
                # Long enough to be read after the first screen has been looked at (5 s was missed).
                self.notify(f"no process with PID {pid}{missing_pid_note}", severity="warning", timeout=20)
        self.update_visible()
        if self.freeze_gc_after_start:
            self.freeze_gc_after_start = False
            self.call_after_refresh(_freeze_gc)

    def _update_header(self) -> None:
        state = f"every {self.interval:g}s" + ("  read-only" if self.read_only else "")
        if os.geteuid() != 0:
            state += "  not root: other users' PSS/fds are ?"
        alert = "PAUSED (p resumes)" if self.paused else ""
        self.query_one(MemoryHeader).update(self.snapshot, state, alert)

    def update_visible(self) -> None:
        """Tell the sampler which PIDs are on screen (read every tick), plus the selected one."""
        pids = set(self.query_one(ProcessesTab).table.visible_pids())
        if self.target is not None:
            pids.add(self.target.pid)
        self.sampler.visible = frozenset(pids)
        self.sampler.selected = self.target.pid if self.target is not None else None

    # --- selection ------------------------------------------------------------------
    def select_process(self, view: ProcessView | None) -> None:
        self.select(view.sample.identity if view is not None else None)

    def select(self, target: ProcessIdentity | None) -> None:
        """Make ``target`` the selected process: the Collector reads its parts for it."""
        if target == self.target:
            return
        self.target = target
        self.collector.set_target(target)
        for tab in self.query(TabView):
            tab.show_target(target)
        self.update_visible()

    def active_tab(self) -> TabView | None:
        tabs = self.query_one(TabbedContent)
        pane = tabs.active_pane
        if pane is None:
            return None
        return _pane_view(pane)  # None: the tab is being built

    def _new_view(self, spec: TabSpec) -> TabView:
        return self.tab_class(spec.load())(id=f"view-{spec.id}")

    async def tab_view(self, pane: TabPane) -> TabView:
        """The pane's tab, built (imported and mounted) the first time it is asked for."""
        view = _pane_view(pane)
        if view is not None:
            return view
        view = self._new_view(TABS_BY_PANE[pane.id])
        await pane.mount(view)
        return view

    @on(TabbedContent.TabActivated)
    async def _tab_activated(self, event: TabbedContent.TabActivated) -> None:
        view = await self.tab_view(event.pane)
        if self.query_one(TabbedContent).active_pane is not event.pane:
            return  # another tab was chosen while this one was built
        view.show_target(self.target)
        self.own_trim_due = True
        self.update_wants()
        self.refresh_tab(view)
        self.refresh_bindings()  # the footer shows the keys that act on this tab

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """A global key acts only where it means something: the footer shows it there only, and
        elsewhere the key does nothing (Textual hides a binding whose check returns False).
        Replay acts on nothing: trim, evict and drop caches would act on the machine now."""
        try:
            tab = self.active_tab()
        except NoMatches:  # before the tabs are composed
            return True
        if tab is None:
            return True
        live = self.replay is None
        if action in ("pause", "resume") and live:
            return self.paused == (action == "resume")
        if action == "filter":
            return tab.can_filter()
        if action == "sort":
            return tab.can_sort()
        if action == "open_layers":
            return tab.OPENS_LAYERS
        if action == "trim":
            return live and tab.TRIMS
        if action == "evict":
            return live and tab.EVICTS
        if action == "drop_caches":
            return live
        return True

    # Hooks that memtop/tui/replay.py (ReplayApp) overrides to show recorded ticks instead.
    def tab_class(self, tab: type[TabView]) -> type[TabView]:
        return tab

    def refresh_tab(self, view: TabView) -> None:
        """Show the current sample on a tab."""
        if self.sample is not None:
            view.show_sample(self.sample)

    # --- actions --------------------------------------------------------------------
    def action_tab(self, index: int) -> None:
        self.query_one(TabbedContent).active = f"tab-{TABS[index].id}"

    def action_help(self) -> None:
        tab = self.active_tab()
        if tab is None:
            return  # being built: the key is gone, as a key pressed during a redraw
        self.push_screen(HelpScreen(tab.TAB_TITLE, tab.FIGURE_SOURCES, tab.TAB_KEYS, GLOBAL_KEYS, tab.TAB_ABOUT))

    def action_filter(self) -> None:
        tab = self.active_tab()
        if tab is not None and not tab.start_filter():
            self.notify("nothing to filter on this tab")

    def action_sort(self) -> None:
        tab = self.active_tab()
        if tab is not None and not tab.choose_sort():
            self.notify("nothing to sort on this tab")

    def action_pause(self) -> None:
        self.paused = not self.paused
        self._wake.set()
        self._update_header()
        self.refresh_bindings()  # p Pause / p Resume

    def action_resume(self) -> None:
        self.action_pause()

    def action_interval(self, step: int) -> None:
        steps = list(INTERVALS_S)
        index = min(range(len(steps)), key=lambda i: abs(steps[i] - self.interval))
        self.interval = steps[max(0, min(len(steps) - 1, index + step))]
        self.collector.interval_s = self.interval
        self._wake.set()
        self._update_header()

    def action_open_layers(self) -> None:
        active = self.active_tab()
        if isinstance(active, ProcessesTab):
            # The row under the cursor, even if another tab chose a target since it moved.
            self.select_process(active.table.selected_view)
        if self.target is None:
            self.notify("select a process first")
            return
        self.query_one(TabbedContent).active = "tab-layers"


    # --- actions that change memory (memtop/tui/actions.py) ---------------------------
    def action_trim(self) -> None:
        from memtop.tui import actions

        tab = self.active_tab()
        if tab is None or tab.TAB_ID not in ("processes", "layers"):
            self.notify("t trims the process selected on the Processes or Layers tab")
            return
        view = self.snapshot.by_pid(self.target.pid) if self.snapshot and self.target else None
        actions.start_trim(self, self.target, view.sample.name[:60] if view else "")

    def action_evict(self) -> None:
        from memtop.tui import actions

        tab = self.active_tab()
        actions.start_evict(self, tab.selected_files() if tab is not None else [])

    def action_drop_caches(self) -> None:
        from memtop.tui import actions

        actions.start_drop_caches(self)

    def action_actions_log(self) -> None:
        from memtop.tui import actions

        actions.show_actions_log(self)


def _freeze_gc() -> None:
    """Once the first snapshot is on screen: collect, then move every object alive (modules,
    widgets, styles: ~100,000) out of the reach of later garbage collections (gc.freeze).

    Every tick makes thousands of short-lived objects, so the cyclic GC runs several times a
    tick, and each full collection walked all of start-up's objects again (~90 ms, about once a
    minute, measured with gc.callbacks in the idle TUI with 1,000 processes). Only for the real
    run: objects frozen never get collected, and tests start hundreds of apps in one process.
    """
    gc.collect()
    gc.freeze()
    ownheap.trim()  # what start-up freed (the first tick reads every smaps_rollup)


def run_app(args) -> int:
    ownheap.limit_arenas()  # before the threads start (memtop/tui/ownheap.py)
    sampler = live_sampler(Path(args.proc))
    sampler.sample_first()
    app = MemtopApp(root=Path(args.proc), interval=args.interval, pid=args.pid, read_only=args.read_only,
                    psi_trigger=getattr(args, "psi_trigger", None), sampler=sampler)
    app.freeze_gc_after_start = True
    app.trim_own_heap_s = ownheap.TRIM_EVERY_S
    app.run()
    return app.return_code or 0
