"""The stall watcher: a PSI trigger kept registered while memtop runs, as a service of the app.

It blocks in poll() on a trigger written to /proc/pressure/memory (Documentation/accounting/
psi.rst, "Userspace monitors") and on a wake pipe, so it costs nothing until the kernel signals
a stall or memtop stops. At a stall it reads PSI once and names the processes whose RSS grew most
(from the Collector's latest sample), and hands a StallEvent to its consumer. Nothing here
imports Textual: the TUI posts the events as messages, a daemon could log them.
"""

from __future__ import annotations

import os
import select
import threading
import time
from pathlib import Path
from typing import Callable

from memtop.model.pressure import StallEvent, TriggerSpec, top_growers
from memtop.model.sample import Sample
from memtop.procfs import PROC
from memtop.procfs.pressure import (
    DEFAULT_TRIGGER,
    PsiTrigger,
    TriggerError,
    is_live_proc,
    parse_trigger_spec,
    read_system_pressure,
)
from memtop.text import printable


class PsiWatch:
    """Runs one thread until :meth:`stop`. ``on_state(armed, text, spec)`` says whether the
    trigger is armed (and why not); ``on_stall(event)`` is called at each stall."""

    def __init__(self, spec: TriggerSpec | None, *, root: Path = PROC,
                 latest: Callable[[], Sample | None] = lambda: None,
                 on_state: Callable[[bool, str, TriggerSpec | None], None] = lambda *a: None,
                 on_stall: Callable[[StallEvent], None] = lambda e: None):
        self.spec = spec
        self.root = Path(root)
        self.latest = latest
        self.on_state = on_state
        self.on_stall = on_stall
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="memtop-psi-watch", daemon=True)

    @classmethod
    def from_text(cls, text: str | None, **kw) -> "PsiWatch":
        """From a --psi-trigger value: 'some|full THRESHOLD_US WINDOW_US', 'off' (None: the default)."""
        text = text or DEFAULT_TRIGGER
        spec = None if text.strip().lower() in ("off", "none", "no") else parse_trigger_spec(text)
        return cls(spec, **kw)

    def start(self) -> "PsiWatch":
        self._thread.start()
        return self

    def stop(self, timeout: float = 2.0) -> None:
        self._stopping.set()
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass
        if self._thread.is_alive():
            self._thread.join(timeout)
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass

    def _run(self) -> None:
        if not is_live_proc(self.root):
            self.on_state(False, "trigger: not armed (the proc root is a captured tree, not the live /proc)", None)
            return
        if self.spec is None:
            self.on_state(False, "trigger: off (--psi-trigger off)", None)
            return
        try:
            trigger = PsiTrigger(self.spec, "memory", self.root)
        except TriggerError as e:
            self.on_state(False, f"trigger: not armed: {printable(str(e))}", None)
            return
        text = f"trigger armed on {printable(str(trigger.path))}: {trigger.spec.describe()}"
        if trigger.adjusted:
            # Short enough for two lines at 80 columns (kernel/sched/psi.c, psi_trigger_create).
            text += f" (asked {trigger.asked.describe()}; without CAP_SYS_RESOURCE: 2 s multiples)"
        self.on_state(True, text, trigger.spec)
        poll = select.poll()
        poll.register(trigger.fileno(), select.POLLPRI)
        poll.register(self._wake_r, select.POLLIN)
        try:
            while not self._stopping.is_set():
                events = poll.poll()
                if self._stopping.is_set():
                    break
                for fd, mask in events:
                    if fd == self._wake_r:
                        continue
                    if mask & select.POLLERR:
                        self.on_state(False, f"trigger: lost: {printable(str(trigger.path))} signalled an error", None)
                        return
                    if mask & select.POLLPRI:
                        self.on_stall(self._event(trigger.spec))
        finally:
            trigger.close()

    def _own_pid(self) -> int | None:
        """memtop's PID as the /proc read sees it (another PID namespace: none)."""
        try:
            return int(os.readlink(f"{self.root}/self"))
        except (OSError, ValueError):
            return None

    def _event(self, spec: TriggerSpec) -> StallEvent:
        sample = self.latest()
        growers = ()
        if sample is not None:
            snapshot = sample.processes
            growers = top_growers(snapshot.processes, snapshot.history, own_pid=self._own_pid())
        try:
            memory = read_system_pressure(self.root).resources.get("memory")
        except OSError:
            memory = None
        return StallEvent(time.time(), spec, memory, growers)
