"""``memtop replay FILE``: the TUI on a recording made by ``memtop record``."""

from __future__ import annotations

import sys
from pathlib import Path

from memtop.commands import CliError

NAME = "replay"
HELP = "open the TUI on a file written by `memtop record`, with time navigation"


def add_arguments(parser) -> None:
    parser.add_argument("file", metavar="FILE", help="a file written by `memtop record` (it may still be being written)")
    parser.add_argument("--check", action="store_true",
                        help="check every tick of the file, print one line about it and exit (no terminal needed)")


def run(args) -> int:
    from memtop.output.record import RecordFileError, RecordReader

    try:
        reader = RecordReader(Path(args.file))
    except RecordFileError as e:
        raise CliError(str(e)) from None
    try:
        reader.load(len(reader) - 1)  # the newest tick decodes, or the file is damaged
        if args.check:
            reader.verify()
    except RecordFileError as e:
        reader.close()
        raise CliError(str(e)) from None
    if args.check:
        import time

        from memtop.text import printable

        first, last = reader.walls[0], reader.walls[-1]
        fmt = "%Y-%m-%d %H:%M:%S"
        # The host and kernel names come from the file: printable, whoever made it.
        print(f"{printable(args.file)}: {len(reader)} ticks from {time.strftime(fmt, time.localtime(first))} to "
              f"{time.strftime(fmt, time.localtime(last))}, every {reader.interval_s:g} s, "
              f"host {printable(reader.meta['hostname'], limit=256)}, "
              f"kernel {printable(reader.meta['kernel'], limit=256)} (schema {reader.version})")
        reader.close()
        return 0
    if not sys.stdout.isatty() or not sys.stdin.isatty():
        reader.close()
        print("memtop: replay needs a terminal (`memtop replay --check FILE` checks a file without one)", file=sys.stderr)
        return 2
    from memtop.tui.replay import ReplayApp

    app = ReplayApp(reader, pid=args.pid)
    app.run()
    reader.close()
    return app.return_code or 0
