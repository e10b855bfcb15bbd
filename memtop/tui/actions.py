"""Actions in the TUI: confirmation screens for trim, evict and drop caches, the trim result with
its one-minute follow-up, and the Actions log view.

The app's key handlers (``t``, ``e``, ``D``, ``A`` in memtop/tui/app.py) call the ``start_*``
functions here. Every slow step (the heap walk for the prediction, the gdb session, the
follow-up, eviction, sync) runs in a thread worker that posts immutable results back; the
screen only draws them. A trim in flight cannot be dismissed: it is bounded by its timeout, and
closing the view must never look like cancelling something that is still stopping a process.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass
from pathlib import Path

from rich.table import Table
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Input, Static
from textual.worker import get_current_worker

from memtop.actions import READ_ONLY_REASON, unavailable_reason
from memtop.format import counted, fmt_bytes, fmt_duration, fmt_rate, sparkline
from memtop.model.process import ProcessIdentity
from memtop.text import printable

FOLLOW_S = 60.0


def _ms(seconds: float | None) -> str:
    return "?" if seconds is None else f"{seconds * 1000:.0f} ms"


@dataclass(frozen=True)
class ActionMark:
    """An action memtop ran, for the Processes tab's RSS chart: when it ended (monotonic
    seconds, the sampler's clock), the process it acted on (None: machine-wide, shown on every
    process's chart) and what it released."""

    time: float
    identity: ProcessIdentity | None
    label: str


def mark_action(app, identity: ProcessIdentity | None, label: str) -> None:
    marks = getattr(app, "action_marks", None)
    if marks is not None:
        marks.append(ActionMark(time.monotonic(), identity, label))


# --- entry points used by the app (and by tabs, e.g. the Page cache tab's `e`) -------------


def start_trim(app, identity: ProcessIdentity | None, name: str = "") -> None:
    """`t`: confirm, then trim ``identity``; explains instead when it cannot be done."""
    if identity is None:
        app.notify("select a process first (Processes or Layers tab)")
        return
    try:
        target_uid = (Path(app.root) / str(identity.pid)).stat().st_uid
    except OSError:
        app.notify(f"PID {identity.pid} has exited", severity="warning")
        return
    reason = unavailable_reason("trim", read_only=app.read_only, target_uid=target_uid)
    if reason:
        app.notify(f"cannot trim: {reason}", severity="warning", timeout=8)
        return
    app.push_screen(TrimScreen(identity, name, root=Path(app.root)))


def start_evict(app, paths: list[Path]) -> None:
    """`e`: confirm, then evict ``paths`` from the page cache."""
    if app.read_only:
        app.notify(f"cannot evict: {READ_ONLY_REASON}", severity="warning", timeout=8)
        return
    if not paths:
        app.notify("no file selected: select a file on the Page cache or Layers tab, then press e")
        return
    app.push_screen(EvictScreen(list(paths)))


def start_drop_caches(app) -> None:
    """`D`: a strong confirmation, then sync and drop caches machine-wide."""
    reason = unavailable_reason("drop-caches", read_only=app.read_only)
    if reason:
        app.notify(f"cannot drop caches: {reason}", severity="warning", timeout=8)
        return
    app.push_screen(DropCachesScreen(root=Path(app.root)))


def show_actions_log(app) -> None:
    app.push_screen(ActionsLogScreen())


class _ActionScreen(ModalScreen[None]):
    """A bordered box in the middle; the keys it takes are in its bottom border."""

    def _hint(self, text: str) -> None:
        self.query_one("#action-body").border_subtitle = text


# --- trim -----------------------------------------------------------------------------------


class TrimScreen(_ActionScreen):
    """Predict -> confirm -> trim -> result -> one-minute follow-up, in one view."""

    BINDINGS = [
        Binding("y", "confirm", "Trim", show=False),
        Binding("n,escape,q,enter", "close", "Close", show=False),  # Enter: the default answer is no
    ]

    class Predicted(Message):
        def __init__(self, prediction):
            super().__init__()
            self.prediction = prediction

    class Trimmed(Message):
        def __init__(self, result):
            super().__init__()
            self.result = result

    class Followed(Message):
        def __init__(self, point, done: bool = False):
            super().__init__()
            self.point = point
            self.done = done

    def __init__(self, identity: ProcessIdentity, name: str = "", *, root: Path, follow_s: float = FOLLOW_S,
                 timeout: float = 5.0):
        super().__init__(classes="action-screen")
        self.identity = identity
        self.process_name = name
        self.root = root
        self.follow_s = follow_s
        self.timeout = timeout
        self.phase = "predicting"  # predicting, confirm, refused, trimming, done
        self.prediction = None
        self.result = None
        self.points: list = []
        self.summary = None

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="action-body"):
            yield Static(id="action-text")

    def on_mount(self) -> None:
        self.query_one("#action-body").border_title = f"Trim the heap of PID {self.identity.pid}"
        self._draw()
        self.predict()

    @work(thread=True, exclusive=True, group="actions-trim", exit_on_error=False)
    def predict(self) -> None:
        from memtop.actions import trim

        try:
            prediction = trim.predict(self.identity, self.root)
        except Exception as e:  # noqa: BLE001 - any failure must end the "walking" state with its reason
            prediction = trim.refused_prediction(f"the prediction failed: {e or type(e).__name__}")
        self.post_message(self.Predicted(prediction))

    @work(thread=True, exclusive=True, group="actions-trim", exit_on_error=False)
    def run_trim(self) -> None:
        from memtop.actions import trim

        try:
            result = trim.trim(self.identity, timeout=self.timeout, root=self.root, prediction=self.prediction)
        except Exception as e:  # noqa: BLE001 - the view must leave "trimming" (it cannot be closed then)
            result = trim.TrimResult(identity=self.identity, comm=self.process_name or "?", status="failed",
                                     message=f"the trim failed: {e or type(e).__name__}", prediction=self.prediction)
        self.post_message(self.Trimmed(result))

    @work(thread=True, exclusive=True, group="actions-follow", exit_on_error=False)
    def run_follow(self) -> None:
        from memtop.actions import trim

        worker = get_current_worker()
        for point in trim.follow(self.result, duration_s=self.follow_s, root=self.root,
                                 should_stop=lambda: worker.is_cancelled):
            self.post_message(self.Followed(point))
        if not worker.is_cancelled:
            self.post_message(self.Followed(None, done=True))

    @on(Predicted)
    def _predicted(self, message: Predicted) -> None:
        self.prediction = message.prediction
        self.phase = "refused" if message.prediction.refusal else "confirm"
        self._draw()

    @on(Trimmed)
    def _trimmed(self, message: Trimmed) -> None:
        self.result = message.result
        self.phase = "done"
        r = self.result
        if r.ok or r.stopped_s is not None:  # it ran (a refusal before attaching left no trace)
            released = r.released_bytes
            mark_action(self.app, self.identity,
                        f"trim: RSS {fmt_bytes(-released, signed=True)}" if released else
                        "trim: RSS unchanged" if released == 0 else f"trim ({r.status})")
        if self.result.ok and self.follow_s > 0:
            self.run_follow()
        if self.result.log_warning:
            self.app.notify(printable(self.result.log_warning), severity="warning", markup=False)
        self._draw()

    @on(Followed)
    def _followed(self, message: Followed) -> None:
        from memtop.actions import trim

        if message.point is not None:
            self.points.append(message.point)
        self.summary = trim.summarize_follow(self.result, self.points)
        self._draw()

    def action_confirm(self) -> None:
        if self.phase != "confirm":
            return
        self.phase = "trimming"
        self._draw()
        self.run_trim()

    def action_close(self) -> None:
        if self.phase == "trimming":
            self.app.notify("the trim is running (bounded by its timeout); the result follows")
            return
        self.workers.cancel_group(self, "actions-follow")
        self.dismiss(None)

    # --- drawing ---
    def _draw(self) -> None:
        text = Text()
        name = f" {printable(self.process_name)}" if self.process_name else ""
        text.append(f"PID {self.identity.pid}{name}\n", style="bold")
        p = self.prediction
        if self.phase == "predicting":
            text.append("Walking the heap read-only to predict what malloc_trim(0) would release…\n")
        if p is not None:
            if p.refusal:
                text.append(f"Cannot trim: {printable(p.refusal)}\n", style="bold")
            else:
                if p.release_bytes == 0:
                    text.append("Nothing would be released: ", style="bold")
                    why = printable(p.reason) if p.reason else "e.g. right after a trim"
                    text.append("the heap walk finds no resident free page malloc_trim(0) could give back "
                                f"({counted(len(p.mutex_addresses), 'arena')}): {why}. Trimming now would "
                                "stop the process for nothing; the default is to leave it.\n")
                elif p.release_bytes is not None:
                    text.append("The heap walk predicts RSS will drop by ")
                    text.append(fmt_bytes(p.release_bytes), style="bold")
                    text.append(f" ({counted(len(p.mutex_addresses), 'arena')}).\n")
                else:
                    text.append(f"No prediction: {printable(p.reason)}\n")
                text.append(f"gdb will stop the process for about {p.estimated_stop_s * 1000:.0f} ms "
                            f"({counted(p.threads, 'thread') if p.threads else 'threads unknown'}) to call malloc_trim(0), after checking that no thread "
                            "is inside malloc and every arena lock is free.\n")
        if self.phase == "trimming":
            text.append("\nTrimming… (gdb attached; the timeout is "
                        f"{self.timeout:g} s, then the call is interrupted and unwound)\n", style="bold")
        r = self.result
        if r is not None:
            text.append("\n")
            text.append(f"{r.status}: ", style="bold")
            text.append(printable(r.message) + "\n")
            if r.ok:
                table = Table.grid(padding=(0, 2))
                table.add_column()
                table.add_column(justify="right")
                table.add_row("predicted", fmt_bytes(p.release_bytes if p else None))
                table.add_row("heap released (pagemap)", fmt_bytes(r.heap_released_bytes))
                table.add_row("RSS before → after", f"{fmt_bytes(r.rss_before)} → {fmt_bytes(r.rss_after)}")
                table.add_row("stopped (attach → detach)", _ms(r.stopped_s))
                table.add_row("of which in malloc_trim", _ms(r.call_s))
                text.append_text(_render(table))
            elif r.stopped_s is not None:
                text.append(f"The process was stopped for {_ms(r.stopped_s)} and is running again.\n")
            for note in r.notes:
                if note != "detached" and not note.startswith("attached to"):
                    text.append(f"· {printable(note)}\n", style="dim")
            if r.ok:
                text.append("sources: predicted = read-only heap walk (/proc/PID/mem); heap released = present pages "
                            "of the heaps in /proc/PID/pagemap; RSS = VmRSS in /proc/PID/status; stopped = memtop's "
                            "clock from gdb's attach to its detach; minor faults = /proc/PID/stat field 10\n",
                            style="dim")
        if self.summary is not None and self.points:
            s = self.summary
            last = self.points[-1]
            text.append(f"\nAfter the trim ({fmt_duration(last.seconds_after)} of {fmt_duration(self.follow_s)}): "
                        f"RSS {fmt_bytes(last.rss_bytes)}, regrowth {fmt_bytes(s.regrowth_bytes, signed=True)}, "
                        f"minor faults {fmt_rate(s.minflt_per_s)}\n")
            text.append(sparkline([pt.rss_bytes for pt in self.points], 50) + "\n", style="bold")
            text.append(printable(s.finding) + "\n", style="bold" if s.came_back else "")
        text.rstrip()
        self.query_one("#action-text", Static).update(text)
        confirm = "y trim   n / Esc cancel"
        if p is not None and p.release_bytes == 0:
            confirm = "Enter / n / Esc leave it   y trim anyway"
        hint = {"predicting": "Esc cancel", "confirm": confirm, "refused": "Esc close",
                "trimming": "please wait", "done": "Esc close"}[self.phase]
        self._hint(hint)


def _render(renderable) -> Text:
    from rich.console import Console

    console = Console(width=72, record=True, file=io.StringIO())
    console.print(renderable)
    return Text.from_ansi(console.export_text(styles=True).rstrip("\n") + "\n")


# --- evict ----------------------------------------------------------------------------------


class EvictScreen(_ActionScreen):
    """Check -> confirm -> evict -> result. The check pins each file as it is shown (its path
    without symbolic links, device, inode, size, mtime: memtop.actions.evict.check_paths); `y`
    evicts only files that are still exactly what was checked, and refuses the others."""

    BINDINGS = [
        Binding("y", "confirm(False)", "Evict", show=False),
        Binding("s", "confirm(True)", "Sync and evict", show=False),
        Binding("n,escape,q", "close", "Close", show=False),
    ]

    class Checked(Message):
        def __init__(self, targets):
            super().__init__()
            self.targets = targets

    class Evicted(Message):
        def __init__(self, outcome):
            super().__init__()
            self.outcome = outcome

    def __init__(self, paths: list[Path]):
        super().__init__(classes="action-screen")
        self.paths = paths
        self.phase = "checking"  # checking, confirm, running, done
        self.targets = None
        self.pending_sync: bool | None = None  # y or s pressed while checking
        self.results = None

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="action-body"):
            yield Static(id="action-text")

    def on_mount(self) -> None:
        self.query_one("#action-body").border_title = "Evict from the page cache"
        self._draw()
        self.run_check()

    @work(thread=True, exclusive=True, group="actions-evict", exit_on_error=False)
    def run_check(self) -> None:
        from memtop.actions.evict import EvictResult, EvictTarget, check_paths

        names = [str(p) for p in self.paths]
        try:
            targets = check_paths(names)
        except Exception as e:  # noqa: BLE001 - the view must leave "checking" with the reason
            targets = [EvictTarget(n, early=EvictResult(n, False, f"the check failed: {e or type(e).__name__}"))
                       for n in names]
        self.post_message(self.Checked(targets))

    @work(thread=True, exclusive=True, group="actions-evict", exit_on_error=False)
    def run_evict(self, sync: bool) -> None:
        from memtop.actions.evict import EvictOutcome, EvictResult, evict_checked

        try:
            outcome = evict_checked(self.targets, sync=sync, named=[str(p) for p in self.paths])
        except Exception as e:  # noqa: BLE001 - the view must leave "running" with the reason
            outcome = EvictOutcome([EvictResult(t.path, False, f"the eviction failed: {e or type(e).__name__}")
                                    for t in self.targets])
        self.post_message(self.Evicted(outcome))

    @on(Checked)
    def _checked(self, message: Checked) -> None:
        self.targets = message.targets
        if self.pending_sync is not None:
            self._start(self.pending_sync)
            return
        self.phase = "confirm"
        self._draw()

    @on(Evicted)
    def _evicted(self, message: Evicted) -> None:
        self.results = message.outcome.results
        self.phase = "done"
        dropped = sum(r.dropped_bytes or 0 for r in self.results)
        mark_action(self.app, None, f"evict: cache {fmt_bytes(-dropped, signed=True)}")
        if message.outcome.log_warning:
            self.app.notify(printable(message.outcome.log_warning), severity="warning", markup=False)
        self._draw()

    def _start(self, sync: bool) -> None:
        self.phase = "running"
        self._draw()
        self.run_evict(sync)

    def action_confirm(self, sync: bool) -> None:
        if self.phase == "confirm":
            self._start(sync)
        elif self.phase == "checking":
            # The names are on screen already; what they are now is pinned by the check, which is
            # what the eviction compares with.
            self.pending_sync = sync
            self._draw()

    def action_close(self) -> None:
        if self.phase != "running":
            self.workers.cancel_group(self, "actions-evict")
            self.dismiss(None)

    def _draw(self) -> None:
        from memtop.render.evict import describe, summarize

        text = Text()
        if self.results is None:
            text.append(f"posix_fadvise(POSIX_FADV_DONTNEED) on {counted(len(self.paths), 'file')}: {'its' if len(self.paths) == 1 else 'their'} clean pages leave "
                        "the page cache (dirty pages stay until written back):\n\n")
            shown = self.targets if self.targets is not None else [None] * len(self.paths)
            for path, target in list(zip(self.paths, shown))[:12]:
                text.append(f"  {printable(str(path))}")
                if target is not None and target.early is not None:
                    text.append(f"  (cannot be evicted: {printable(target.early.error)})", style="bold")
                elif target is not None and target.via_link:
                    text.append(f"  → {printable(target.resolved)}", style="bold")
                text.append("\n")
            if len(self.paths) > 12:
                text.append(f"  … and {len(self.paths) - 12} more\n")
            if self.phase == "checking":
                text.append("\nchecking the files…" + (" (evicts once the check is done)" if self.pending_sync is not None
                                                       else "") + "\n", style="dim")
            else:
                text.append("\nOnly files still exactly as checked now (same file, size and mtime) are evicted.\n",
                            style="dim")
        else:
            for r in self.results:
                text.append(describe(r) + "\n", style="" if r.outcome in ("complete", "unknown") else "bold")
            text.append(f"\n{summarize(self.results)}\n", style="bold")
        text.rstrip()
        self.query_one("#action-text", Static).update(text)
        self._hint(
            {"checking": "y evict   s sync first, then evict   n / Esc cancel",
             "confirm": "y evict   s sync first, then evict   n / Esc cancel", "running": "please wait",
             "done": "Esc close"}[self.phase])


# --- drop caches -----------------------------------------------------------------------------


class DropCachesScreen(_ActionScreen):
    """A strong confirmation: choose the level, then type ``drop``."""

    BINDINGS = [Binding("escape", "close", "Close", show=False)]

    class Dropped(Message):
        def __init__(self, result):
            super().__init__()
            self.result = result

    def __init__(self, *, root: Path):
        super().__init__(classes="action-screen")
        self.root = root
        self.level = 1
        self.phase = "confirm"
        self.result = None

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="action-body"):
            yield Static(id="action-text")
            yield Input(placeholder="type drop, or 1/2/3 to choose the level first", id="drop-confirm")

    def on_mount(self) -> None:
        self.query_one("#action-body").border_title = "Drop caches (the whole machine)"
        self._draw()
        self.query_one("#drop-confirm", Input).focus()

    @on(Input.Changed, "#drop-confirm")
    def _changed(self, event: Input.Changed) -> None:
        if event.value in ("1", "2", "3"):
            self.level = int(event.value)
            event.input.value = ""
            self._draw()

    @on(Input.Submitted, "#drop-confirm")
    def _submitted(self, event: Input.Submitted) -> None:
        if self.phase != "confirm":
            return
        if event.value.strip() != "drop":
            self.app.notify("type the word drop to confirm, or Esc to cancel")
            return
        self.phase = "running"
        event.input.display = False
        self._draw()
        self.run_drop()

    @work(thread=True, exclusive=True, group="actions-drop", exit_on_error=False)
    def run_drop(self) -> None:
        from memtop.actions.drop_caches import drop_caches

        self.post_message(self.Dropped(drop_caches(self.level, root=self.root)))

    @on(Dropped)
    def _dropped(self, message: Dropped) -> None:
        self.result = message.result
        self.phase = "done"
        if self.result.ok:
            change = self.result.change("Cached")
            mark_action(self.app, None, "drop caches" + (f": Cached {fmt_bytes(change, signed=True)}"
                                                         if change is not None else ""))
        self._draw()

    def action_close(self) -> None:
        if self.phase != "running":
            self.dismiss(None)

    def _draw(self) -> None:
        from memtop.actions.drop_caches import LEVELS, REPORTED

        text = Text()
        if self.result is None:
            text.append("This syncs, then writes ")
            text.append(str(self.level), style="bold")
            text.append(f" to /proc/sys/vm/drop_caches: it drops {LEVELS[self.level]} for the WHOLE machine. Every "
                        "program will read its files from disk again; it is a test or a last resort, never a fix.\n\n",
                        style="")
            text.append("Level: 1 page cache, 2 dentries and inodes, 3 both. Type ")
            text.append("drop", style="bold")
            text.append(" and Enter to go on.\n")
            if self.phase == "running":
                text.append("\nsync and drop running…\n", style="bold")
        else:
            r = self.result
            if not r.ok:
                text.append(f"Not done: {printable(r.error)}\n", style="bold")
            else:
                text.append(f"Dropped {LEVELS[r.level]} (sync {r.sync_s:.2f} s, drop {r.drop_s:.2f} s)\n\n")
            table = Table(box=None, padding=(0, 2))
            table.add_column("meminfo")
            table.add_column("before", justify="right")
            table.add_column("after", justify="right")
            table.add_column("change", justify="right")
            for key in REPORTED:
                table.add_row(key, fmt_bytes(r.before.get(key)), fmt_bytes(r.after.get(key)),
                              fmt_bytes(r.change(key), signed=True))
            text.append_text(_render(table))
        text.rstrip()
        self.query_one("#action-text", Static).update(text)
        self._hint({"confirm": "Esc cancel", "running": "please wait",
                                                       "done": "Esc close"}[self.phase])


# --- the actions log --------------------------------------------------------------------------


def describe_record(record: dict) -> tuple[str, str, str, str, str]:
    """(time, user, action, target, result) of one audit line, for the log view, each made safe
    for the terminal (paths and names in the log are any user's choice)."""
    target = record.get("target") or {}
    result = record.get("result") or {}
    action = str(record.get("action", "?"))
    if action == "trim":
        what = f"PID {target.get('pid')} {target.get('comm', '')}"
        released = result.get("released_bytes")
        # never "released -4.00 KiB": RSS grew a little meanwhile (gdb's attach, the program)
        gave = (f"released nothing (RSS +{fmt_bytes(-released)})" if isinstance(released, int) and released < 0
                else f"released {fmt_bytes(released)}")
        outcome = f"{result.get('status', '?')}: {gave}, stopped {result.get('stopped_ms', '?')} ms"
        if result.get("status") != "ok":
            outcome = f"{result.get('status', '?')}: {result.get('message', '')}"
    elif action == "evict":
        paths = target.get("paths") or []
        what = f"{paths[0] if paths else '?'}" + (f" +{len(paths) - 1}" if len(paths) > 1 else "")
        partial = f", {result['partial']} partly" if result.get("partial") else ""
        refused = f" ({result['refused']} refused: changed since checked)" if result.get("refused") else ""
        files = result.get("files")
        outcome = (f"{counted(files, 'file') if isinstance(files, int) else '? files'}, {result.get('failed', 0)} failed{refused}{partial}, "
                   f"dropped {fmt_bytes(result.get('dropped_bytes'))}")
    elif action == "drop-caches":
        what = f"level {target.get('level', '?')}"
        outcome = "ok" if result.get("ok") else f"not done: {result.get('error')}"
    else:
        what, outcome = str(target), str(result)
    when = str(record.get("time", "?")).replace("T", " ")[:19]
    return tuple(printable(str(cell)) for cell in (when, record.get("user", "?"), action, what, outcome))


class ActionsLogScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,A", "dismiss", "Close", show=False)]

    def __init__(self):
        # actions-log: the whole width (app.tcss), paths and results are long
        super().__init__(classes="action-screen actions-log")

    def compose(self) -> ComposeResult:
        from memtop.actions import audit

        records, problems = audit.read_log()
        self.rows = [describe_record(record) for record in reversed(records)]
        table = Table(box=None, padding=(0, 1), header_style="bold", expand=True)
        for column in ("time (UTC)", "user", "action"):
            table.add_column(column, no_wrap=True)
        # The rest of the width goes to the target (paths) and the result, 3:2; long paths fold.
        table.add_column("target", overflow="fold", ratio=3)
        table.add_column("result", overflow="fold", ratio=2)
        for row in self.rows:
            table.add_row(*(Text(cell) for cell in row))  # Text: a cell's "[...]" is never Rich markup
        self.table = table
        with VerticalScroll(id="action-body"):
            yield Static(Text(f"{printable(str(audit.log_path()))} — newest first; one JSON line per action",
                              style="dim"))
            yield Static(table if records else Text("No action has been logged yet."), id="actions-log-table")
            if problems:
                yield Static(Text(printable("; ".join(problems)), style="dim"))

    def on_mount(self) -> None:
        self.query_one("#action-body").border_title = "Actions log"
