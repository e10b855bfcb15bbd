"""``memtop evict PATH... [-r] [--sync] [--json]``: drop files' clean pages from the page cache."""

from __future__ import annotations

import json
import sys

from memtop.actions import unavailable_reason
from memtop.commands import CliError
from memtop.format import counted
from memtop.render.evict import describe, summarize
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
    done = sum(r.outcome in ("complete", "unknown") for r in results)
    if results and done == len(results):
        return 0
    # A failure says so in one line on stderr, as every command does (the details are above).
    print(f"memtop: {len(results) - done} of {counted(len(results), 'path')} not (completely) evicted", file=sys.stderr)
    return 1
