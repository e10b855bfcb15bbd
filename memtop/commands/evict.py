"""``memtop evict PATH... [-r] [--sync] [--json]``: drop files' clean pages from the page cache."""

from __future__ import annotations

import json
import sys

from memtop.actions import unavailable_reason
from memtop.commands import CliError
from memtop.format import fmt_bytes

NAME = "evict"
HELP = "posix_fadvise(DONTNEED) on files: report cached bytes before and after, and dirty pages kept"


def add_arguments(parser) -> None:
    parser.add_argument("paths", nargs="+", metavar="PATH", help="files (or directories with -r)")
    parser.add_argument("-r", "--recursive", action="store_true", help="evict every regular file under a directory")
    parser.add_argument("--sync", action="store_true", help="write dirty pages first (fdatasync) so they can be dropped")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")


def run(args) -> int:
    from memtop.actions.evict import evict_paths

    reason = unavailable_reason("evict", read_only=getattr(args, "read_only", False))
    if reason:
        raise CliError(reason)
    results = evict_paths(args.paths, recursive=args.recursive, sync=args.sync)
    if args.json:
        json.dump({"results": [r.as_json() for r in results]}, sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        for r in results:
            print(describe(r))
        ok = [r for r in results if r.ok]
        dropped = sum(r.dropped_bytes or 0 for r in ok)
        print(f"{len(ok)} of {len(results)} file(s) evicted, {fmt_bytes(dropped)} dropped from the page cache")
    return 0 if results and all(r.ok for r in results) else 1


def describe(r) -> str:
    if not r.ok:
        return f"{r.path}: not evicted: {r.error}"
    if r.dropped_bytes is None:
        return f"{r.path}: evicted; cached before/after unknown ({r.unknown_reason})"
    text = (f"{r.path}: cached {fmt_bytes(r.before.cached_bytes)} -> {fmt_bytes(r.after.cached_bytes)} "
            f"(dropped {fmt_bytes(r.dropped_bytes)})")
    kept = r.kept_dirty_bytes
    if kept:
        text += f"; {fmt_bytes(kept)} dirty or under writeback could not be dropped (try --sync)"
    return text
