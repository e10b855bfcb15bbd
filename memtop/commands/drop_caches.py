"""``memtop drop-caches [1|2|3] [--yes] [--json]``: sync, then /proc/sys/vm/drop_caches."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from memtop.actions import unavailable_reason
from memtop.commands import CliError
from memtop.format import fmt_bytes

NAME = "drop-caches"
HELP = "sync, then drop clean caches machine-wide (1 page cache, 2 slab, 3 both); report before/after"


def add_arguments(parser) -> None:
    parser.add_argument("level", nargs="?", type=int, choices=(1, 2, 3), default=1,
                        help="1 the page cache (default), 2 dentries and inodes, 3 both")
    parser.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def run(args) -> int:
    from memtop.actions.drop_caches import LEVELS, REPORTED, drop_caches

    reason = unavailable_reason("drop-caches", read_only=getattr(args, "read_only", False))
    if reason:
        raise CliError(reason)
    if not args.yes:
        if not sys.stdin.isatty():
            raise CliError("not a terminal: add --yes to drop caches without a confirmation")
        print(f"This drops {LEVELS[args.level]} for the WHOLE machine: every program will read its files from disk again.")
        try:
            answer = input("Type 'drop' to go on: ")
        except EOFError:
            answer = ""
        if answer.strip() != "drop":
            print("nothing done")
            return 1
    result = drop_caches(args.level, root=Path(args.proc))
    if args.json:
        json.dump(result.as_json(), sys.stdout, indent=1)
        sys.stdout.write("\n")
    elif not result.ok:
        raise CliError(result.error)
    else:
        print(f"dropped {LEVELS[args.level]} (sync {result.sync_s:.2f} s, drop {result.drop_s:.2f} s)")
        for key in REPORTED:
            print(f"  {key:<13} {fmt_bytes(result.before.get(key)):>10} -> {fmt_bytes(result.after.get(key)):>10}"
                  f"  ({fmt_bytes(result.change(key), signed=True)})")
    return 0 if result.ok else 1
