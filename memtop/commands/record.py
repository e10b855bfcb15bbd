"""``memtop record FILE [--interval S] [--duration D] [--max-size SIZE]``: sample as the TUI does
and write every tick to a size-bounded SQLite file that ``memtop replay`` opens.

FILE is created new (never overwritten, never through a symbolic link, mode 0600: it holds every
command line) in a directory no other user can write (memtop.output.record.writer). --max-size
bounds the file and its -wal together, whatever the processes are (command lines are cut to
4,096 characters; a tick that cannot fit is not recorded, and said so). When the disk fills up,
recording stops with status 1 and the ticks recorded stay readable.
"""

from __future__ import annotations

import argparse
import re
import signal
import sys
import threading
import time
from pathlib import Path

from memtop.commands import CliError, interval_seconds, pid_arg
from memtop.format import fmt_bytes, fmt_duration
from memtop.procfs import ProcfsError
from memtop.text import printable

NAME = "record"
HELP = "record samples to a size-bounded SQLite file, for `memtop replay`"

_UNITS = {"": 1, "b": 1, "k": 2**10, "kb": 2**10, "kib": 2**10, "m": 2**20, "mb": 2**20, "mib": 2**20,
          "g": 2**30, "gb": 2**30, "gib": 2**30}
_DURATION_UNITS = {"": 1, "s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}


def size_arg(text: str) -> int:
    """A size: bytes, or with K/M/G (powers of 1024: 100M = 100 MiB)."""
    from memtop.output.record import MIN_MAX_BYTES

    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", text)
    if not m or m.group(2).lower() not in _UNITS:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 100M, 1G, 500K)")
    value = int(float(m.group(1)) * _UNITS[m.group(2).lower()])
    if value < MIN_MAX_BYTES:
        raise argparse.ArgumentTypeError(f"at least {MIN_MAX_BYTES // 1024}K, not {text}")
    return value


def duration_arg(text: str) -> float:
    """A duration: seconds, or with s/m/h/d (90, 90s, 10m, 2h)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", text)
    if not m or m.group(2).lower() not in _DURATION_UNITS:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 90, 10m, 2h)")
    value = float(m.group(1)) * _DURATION_UNITS[m.group(2).lower()]
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, not {text}")
    return value


# memtop.output.record's DEFAULT_MAX_BYTES (tests/unit/test_record_codec.py checks they agree): not
# imported here, so that building the command line (every `memtop` start) does not load the writer.
DEFAULT_MAX_BYTES = 100 * 2**20


def add_arguments(parser) -> None:
    parser.add_argument("file", metavar="FILE", help="the record file to create (never overwritten)")
    parser.add_argument("--interval", type=interval_seconds, default=None, metavar="S", dest="record_interval",
                        help="seconds between ticks, 0.5 to 3600 (default 2, or memtop's own --interval)")
    parser.add_argument("--duration", type=duration_arg, default=None, metavar="D",
                        help="stop after this long (90, 10m, 2h; default: until Ctrl-C or SIGTERM)")
    parser.add_argument("--max-size", type=size_arg, default=DEFAULT_MAX_BYTES, metavar="SIZE",
                        help=f"bound of the file (default {DEFAULT_MAX_BYTES // 2**20}M); beyond it the oldest "
                             "ticks are dropped, like a ring")
    parser.add_argument("--pid", type=pid_arg, default=argparse.SUPPRESS, metavar="PID",  # memtop --pid N record: the same
                        help="also record this process's Layers and Arenas reports (a read-only heap walk every "
                             "few seconds), for replay")
    parser.add_argument("--quiet", action="store_true", help="print nothing but errors")


def run(args) -> int:
    from memtop.collect.record import Recorder
    from memtop.output.record import RecordFileError, RecordWriter

    path = Path(args.file)
    shown = printable(str(path))
    # `memtop record F --interval 1` and `memtop --interval 1 record F` mean the same.
    interval = args.record_interval if args.record_interval is not None else args.interval
    stop = threading.Event()
    received: list[int] = []

    def on_signal(signum, frame):
        # Finish the tick being written, then stop: the file is always whole.
        received.append(signum)
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        recorder = Recorder(Path(args.proc), pid=args.pid)
    except ProcfsError:
        raise CliError(f"no process with PID {args.pid}") from None
    try:
        try:
            writer = RecordWriter(path, recorder.meta(interval, args.max_size), max_bytes=args.max_size)
        except RecordFileError as e:
            raise CliError(str(e)) from None
        say = (lambda text: None) if args.quiet else (lambda text: print(text, file=sys.stderr, flush=True))
        limit = f" for {fmt_duration(args.duration)}" if args.duration else " until Ctrl-C"
        say(f"memtop: recording to {shown} every {interval:g} s{limit}; at most {fmt_bytes(args.max_size)} "
            "(the oldest ticks are dropped beyond that)")
        start = time.monotonic()
        deadline = start + args.duration if args.duration else None
        next_tick = start
        skipped = None
        try:
            while not stop.is_set():
                try:
                    writer.write(recorder.capture())
                except RecordFileError as e:
                    if e.disk_full:
                        kept = (f"the {writer.ticks_written} ticks recorded before stay readable "
                                f"(memtop replay {shown})" if writer.ticks_written else "nothing was recorded")
                        raise CliError(f"{e}: recording stopped; {kept}") from None
                    raise CliError(str(e)) from None
                if writer.skipped is not None and writer.skipped != skipped:
                    skipped = writer.skipped
                    # Said even with --quiet: the file misses ticks.
                    print(f"memtop: {printable(skipped)}", file=sys.stderr, flush=True)
                next_tick += interval
                now = time.monotonic()
                if next_tick < now:  # a tick took longer than the interval: skip, do not bunch up
                    next_tick = now
                if deadline is not None and next_tick > deadline + 1e-6:
                    break
                stop.wait(next_tick - now)
        finally:
            writer.close()
        size = path.stat().st_size if path.exists() else 0
        per_tick = writer.bytes_written / writer.ticks_written if writer.ticks_written else 0
        dropped = f", {writer.ticks_evicted} oldest dropped by the bound" if writer.ticks_evicted else ""
        if writer.ticks_skipped:
            dropped += f", {writer.ticks_skipped} not recorded (larger than the bound allows)"
        if writer.sections_left_out:
            dropped += f", {writer.sections_left_out} sections left out (too large)"
        say(f"memtop: {writer.ticks_written} ticks recorded in {fmt_duration(time.monotonic() - start)}{dropped}; "
            f"{shown} is {fmt_bytes(size)} ({fmt_bytes(per_tick)} of compressed data per tick)")
        if not writer.ticks_written:
            raise CliError(f"{shown}: no tick could be recorded: {printable(writer.skipped or '?')}")
    finally:
        recorder.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
