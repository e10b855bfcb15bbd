"""Textual's Linux driver, with an input thread that sleeps until there is input.

Textual's input thread (textual/drivers/linux_driver.py, ``run_input_thread``) waits for keys
with ``select`` and a 0.1 s timeout: it wakes ten times a second to see whether it should stop,
and to end a lone Esc (the parser waits 0.1 s for the rest of an escape sequence). Each wake
costs ~165 µs of CPU on this machine's VM (a bare Python thread doing only that: 0.17 % of a
core), a sixth of what the whole idle memtop may cost. This input thread blocks until a key
arrives; it polls at 0.1 s only while the parser waits for the rest of a sequence; and stopping
wakes it through a pipe (the exit event writes to it), so quitting is not slower.

The loop is Textual's own, line for line but for the timeout and the pipe; it relies on
private names of Textual (XTermParser, its ``_timeout_time``), so it is used only with the
Textual versions it was read from, exactly (:data:`KNOWN_TEXTUAL`, the version pyproject.toml
pins): any other gets Textual's driver. tests/unit/test_pins.py fails when pin and list disagree.
"""

from __future__ import annotations

import os
import selectors
import threading
from codecs import getincrementaldecoder
from pathlib import Path

import textual
from textual import constants
from textual.message import Message

KNOWN_TEXTUAL = ("8.2.8",)
INPUT_THREAD_NAME = "memtop-input"  # as top -H, ps -L and /proc/PID/task/TID/comm show it


def name_this_thread(name: str) -> None:
    """Give the calling thread a name the kernel shows (its comm, at most 15 bytes)."""
    try:
        with open(f"/proc/self/task/{threading.get_native_id()}/comm", "w") as f:
            f.write(name[:15])
    except OSError:
        pass  # no /proc: the thread keeps the process's name


class _WakingEvent(threading.Event):
    """The driver's exit event: setting it also wakes the input thread's select."""

    def __init__(self, wake_fd: int):
        super().__init__()
        self._wake_fd = wake_fd

    def set(self) -> None:
        super().set()
        try:
            os.write(self._wake_fd, b"x")
        except OSError:
            pass  # the pipe is full (a wake is pending anyway) or closed (the driver is gone)


class TerminalLost(Message):
    """The terminal went away (hangup, EOF or EIO on it): the app exits. Posted from any thread
    (post_message is thread-safe and does not wait, so it cannot deadlock a stopping app)."""

    def __init__(self, reason: str):
        super().__init__()
        self.reason = reason


def textual_version(site: Path | None = None) -> str:
    """The installed Textual's version, from its ``textual-VERSION.dist-info`` beside the package
    (``site``: the directory that holds both). ``textual.__version__`` asks importlib.metadata,
    which imports ~40 modules: 38 ms of start-up and 1.8 MiB kept for the life of memtop
    (tracemalloc, issue 20 items 3 and 5). Where the directory is not there (an egg, a source
    tree), importlib.metadata answers."""
    site = site or Path(textual.__file__).resolve().parent.parent
    try:
        found = [name for name in os.listdir(site) if name.startswith("textual-") and name.endswith(".dist-info")]
    except OSError:
        found = []
    if len(found) == 1:
        return found[0][len("textual-"):-len(".dist-info")]
    return textual.__version__


def driver_class():
    """The quiet driver, or None where Textual's own must be used (another version of Textual,
    a driver chosen with TEXTUAL_DRIVER, not Linux)."""
    if constants.DRIVER is not None or os.name != "posix":
        return None
    if textual_version() not in KNOWN_TEXTUAL:
        return None
    from textual._loop import loop_last
    from textual._parser import ParseError
    from textual._xterm_parser import XTermParser
    from textual.drivers.linux_driver import LinuxDriver

    class QuietLinuxDriver(LinuxDriver):
        def __init__(self, *args, **kw):
            super().__init__(*args, **kw)
            self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
            self.exit_event = _WakingEvent(self._wake_w)

        def _sigtstp_application(self, *args) -> None:
            self._stopped_by_us = True
            super()._sigtstp_application(*args)

        def _sigcont_application(self, *args) -> None:
            # Textual restarts the terminal on any SIGCONT, from a signal handler that runs in the
            # middle of whatever the main thread does. A hung-up terminal sends SIGHUP and
            # SIGCONT (tty_signal_session_leader): the restart then met the shutdown inside the
            # writer thread's queue and memtop hung as an orphan (seen: 1 run in 2). Only a
            # SIGCONT that ends our own Ctrl-Z restarts the terminal.
            if getattr(self, "_stopped_by_us", False):
                self._stopped_by_us = False
                super()._sigcont_application(*args)

        def _get_terminal_size(self) -> tuple[int, int]:
            # The size the terminal has (TIOCGWINSZ), not COLUMNS and LINES: Textual asks
            # shutil, which prefers those variables, so a parent that exported them (GNU
            # readline sets them in its process's environment, and children inherit them)
            # froze memtop at that size, every resize included (seen: 80x24 in a 120x40 tmux).
            for fd in (self._file.fileno(), self.fileno):
                try:
                    size = os.get_terminal_size(fd)
                except (OSError, ValueError):
                    continue
                if size.columns > 0 and size.lines > 0:
                    return size.columns, size.lines
            return super()._get_terminal_size()

        def close(self) -> None:
            super().close()
            for fd in (self._wake_r, self._wake_w):
                try:
                    os.close(fd)
                except OSError:
                    pass

        def _drain_wake(self) -> None:
            try:
                while os.read(self._wake_r, 256):
                    pass
            except OSError:
                pass  # EAGAIN: empty

        def run_input_thread(self) -> None:
            """Wait for input and dispatch events (Textual 8.2's loop; see the module doc)."""
            name_this_thread(INPUT_THREAD_NAME)
            selector = selectors.SelectSelector()
            selector.register(self.fileno, selectors.EVENT_READ)
            selector.register(self._wake_r, selectors.EVENT_READ)
            self._drain_wake()  # a wake left from an earlier stop (suspend and resume)

            fileno = self.fileno
            EVENT_READ = selectors.EVENT_READ
            parser = XTermParser(self._debug)
            feed = parser.feed
            tick = parser.tick
            decode = getincrementaldecoder("utf-8")().decode
            read = os.read

            def process_selector_events(selector_events, final: bool = False) -> bool:
                """False when the terminal is gone: EOF or EIO (a hung-up tty reads as either)."""
                selector_events = [(key, mask) for key, mask in selector_events if key.fd == fileno]
                for last, (_selector_key, mask) in loop_last(selector_events):
                    if mask & EVENT_READ:
                        try:
                            data = read(fileno, 1024 * 4)
                        except OSError:  # EIO after a hangup, EBADF
                            return False
                        if not data:
                            # Textual's loop breaks here and selects again: on a dead terminal
                            # that spins forever (13-58 % of a core seen, orphaned).
                            return False
                        unicode_data = decode(data, final=final and last)
                        for event in feed(unicode_data):
                            self.process_message(event)
                for event in tick():
                    self.process_message(event)
                return True

            def timeout() -> float | None:
                # Block, unless the parser waits for the rest of an escape sequence.
                return None if getattr(parser, "_timeout_time", 0.0) is None else 0.1

            try:
                while not self.exit_event.is_set():
                    if not process_selector_events(selector.select(timeout())):
                        self._app.post_message(TerminalLost("the terminal is gone (end of input)"))
                        break
                selector.unregister(self.fileno)
                self._drain_wake()
                for event in tick():
                    self.process_message(event)
            finally:
                selector.close()
                try:
                    for event in feed(""):
                        pass
                except (EOFError, ParseError):
                    pass

    return QuietLinuxDriver
