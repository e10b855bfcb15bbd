"""``memtop evict PATH... [-r] [--sync] [--json]``: drop files' clean pages from the page cache."""

from __future__ import annotations

import json
import sys

from memtop.actions import unavailable_reason
from memtop.commands import CliError
from memtop.format import fmt_bytes
from memtop.text import json_safe, printable

NAME = "evict"
HELP = "posix_fadvise(DONTNEED) on files: report cached bytes before and after, and dirty pages kept"
EPILOG = """\
Clean, unmapped pages are dropped at once; dirty pages stay until written back (--sync writes
them first); pages mapped by a process, locked, or read again meanwhile stay cached too.
Each file is checked first (a symbolic link named is followed once, there), then opened without
following any link and compared with what was checked (device, inode, size, mtime): a file
replaced or changed in between is refused, untouched, and the refusal is in the audit log.
Exit status: 0 when every file was evicted completely (nothing of it left in the page cache, or
the kernel cannot tell: no cachestat); 1 when any file could not be evicted, was refused, or kept
pages cached (partly evicted: each such file's line says how much stayed, and why); 2 usage error."""


def add_arguments(parser) -> None:
    import argparse

    parser.epilog = EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter  # keep the epilog's lines
    parser.add_argument("paths", nargs="+", metavar="PATH", help="files (or directories with -r)")
    parser.add_argument("-r", "--recursive", action="store_true", help="evict every regular file under a directory")
    parser.add_argument("--sync", action="store_true", help="write dirty pages first (fdatasync) so they can be dropped")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")


def run(args) -> int:
    from memtop.actions.evict import check_paths, evict_checked

    reason = unavailable_reason("evict", read_only=getattr(args, "read_only", False))
    if reason:
        raise CliError(reason)
    targets = check_paths(args.paths, recursive=args.recursive)  # the check: each file pinned
    outcome = evict_checked(targets, sync=args.sync, named=args.paths, recursive=args.recursive)  # the act
    results = outcome.results
    if outcome.log_warning:
        print(f"memtop: {printable(outcome.log_warning)}", file=sys.stderr)
    if args.json:
        json.dump(json_safe({"results": [r.as_json() for r in results]}), sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        for r in results:
            print(describe(r))
        print(summarize(results))
    # See EPILOG: a partly evicted file is not a success, the user asked for its pages to go.
    return 0 if results and all(r.outcome in ("complete", "unknown") for r in results) else 1


def summarize(results) -> str:
    """One line: how many files were evicted completely, partly, not at all, and the bytes dropped."""
    count = {k: sum(r.outcome == k for r in results) for k in ("complete", "partial", "failed", "refused", "unknown")}
    parts = [f"{count['complete']} of {len(results)} file(s) evicted completely"]
    if count["partial"]:
        parts.append(f"{count['partial']} partly (pages stayed cached, see above)")
    if count["unknown"]:
        parts.append(f"{count['unknown']} advised, outcome unknown")
    if count["failed"]:
        parts.append(f"{count['failed']} not evicted")
    if count["refused"]:
        parts.append(f"{count['refused']} refused (changed since checked)")
    dropped = sum(r.dropped_bytes or 0 for r in results if r.ok)
    return "; ".join(parts) + f"; {fmt_bytes(dropped)} dropped from the page cache"


def describe(r) -> str:
    """One line for a terminal: the path (any user's choice of bytes) goes through printable()."""
    path = printable(r.path)
    if not r.ok:
        return f"{path}: not evicted: {printable(r.error)}"
    if r.dropped_bytes is None:
        return f"{path}: evicted; cached before/after unknown ({printable(r.unknown_reason)})"
    text = (f"{path}: cached {fmt_bytes(r.before.cached_bytes)} -> {fmt_bytes(r.after.cached_bytes)}: "
            f"dropped {fmt_bytes(r.dropped_bytes)} clean")
    kept = r.kept_dirty_bytes
    if kept:
        text += f"; kept {fmt_bytes(kept)} dirty or under writeback, which could not be dropped (try --sync)"
    other = r.kept_other_bytes
    if other:
        text += f"; {fmt_bytes(other)} stayed cached for other reasons (mapped by a process, locked, or read again)"
    if r.outcome == "partial":
        text += " [partly evicted]"
    return text
