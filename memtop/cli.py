"""``memtop`` and its subcommands. Exit status: 0 success, 1 failure, 2 usage error."""

from __future__ import annotations

import argparse
import importlib
import sys

from memtop import __version__
from memtop.commands import COMMAND_MODULES, CliError, interval_seconds, pid_arg
from memtop.text import PrintableStream, printable


def build_parser() -> tuple[argparse.ArgumentParser, dict]:
    parser = argparse.ArgumentParser(
        prog="memtop",
        description="Why is this memory here? A live, layered view of memory on this machine.",
    )
    parser.add_argument("--version", action="version", version=f"memtop {__version__}")
    parser.add_argument("--interval", type=interval_seconds, default=2.0, metavar="S",
                        help="refresh interval in seconds, 0.5 to 3600 (default 2)")
    parser.add_argument("--pid", type=pid_arg, metavar="PID", help="select this process at start")
    parser.add_argument("--read-only", action="store_true", help="disable every action (trim, evict, drop caches)")
    parser.add_argument("--psi-trigger", default=None, metavar="SPEC",
                        help="PSI trigger for stall alerts: 'some|full THRESHOLD_US WINDOW_US' "
                             "(default 'some 100000 1000000': 100 ms of stall per 1 s), or 'off'")
    parser.add_argument("--proc", default="/proc", metavar="DIR", help=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands = {}
    for module_name in COMMAND_MODULES:
        module = importlib.import_module(module_name)
        p = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        commands[module.NAME] = module
    return parser, commands


def main(argv: list[str] | None = None) -> int:
    parser, commands = build_parser()
    args = parser.parse_args(argv)
    from memtop.procfs import raise_fd_limit

    raise_fd_limit()
    try:
        if args.command is None:
            if args.psi_trigger is not None and args.psi_trigger.strip().lower() not in ("off", "none", "no"):
                from memtop.procfs.pressure import parse_trigger_spec

                try:
                    parse_trigger_spec(args.psi_trigger)
                except ValueError as e:
                    parser.error(f"--psi-trigger: {e}")
            if not sys.stdout.isatty() or not sys.stdin.isatty():
                print("memtop: the live view needs a terminal; try `memtop snapshot`", file=sys.stderr)
                return 2
            # The live view never speaks TLS: asyncio's import would load libssl and libcrypto
            # for nothing (3.3 MiB of memtop's RSS, issue 20). asyncio, http and urllib do
            # without ssl when `import ssl` fails, as on a Python built without it.
            sys.modules.setdefault("ssl", None)
            from memtop.tui.app import run_app  # Textual is imported only for the TUI

            return run_app(args)
        # Text outputs pass through printable: process names, paths and mount points are other
        # users' and must never reach a terminal raw (memtop/text.py).
        sys.stdout, sys.stderr = PrintableStream(sys.stdout), PrintableStream(sys.stderr)
        args.parser = parser  # `memtop completion` and `memtop help` describe memtop's own arguments
        return commands[args.command].run(args)
    except CliError as e:
        print(f"memtop: {printable(str(e))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `memtop snapshot | head`: the reader went away; not our failure.
        sys.stderr.close()
        return 0
