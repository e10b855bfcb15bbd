"""``memtop cache PATH... [-r] [--json]``: how much of each file is in the page cache (like fincore).

Figures come from cachestat(2) (mmap + mincore on kernels before 6.5). A figure this user cannot
know (a file it may not write: see memtop/procfs/cachestat.py) is ``?`` / null with the reason.
"""

from __future__ import annotations


import os
import stat as stat_mod
import sys

from memtop.commands import CliError, positive_int
from memtop.text import json_dumps, printable

NAME = "cache"
HELP = "page cache residency of files (cached, dirty, recently evicted), like fincore"

DEFAULT_LIMIT = 100_000
SORT_KEYS = ("path", "cached", "size", "evicted")

# The keys of one file in the JSON output (issue 6), in this order.
JSON_KEYS = ("path", "size_bytes", "cached_bytes", "dirty_bytes", "writeback_bytes", "recently_evicted_bytes", "reason")


def add_arguments(parser) -> None:
    parser.add_argument("paths", nargs="+", metavar="PATH", help="files (or directories, with -r)")
    parser.add_argument("-r", "--recursive", action="store_true",
                        help="scan directories (symlinks are not followed; FIFOs, sockets and devices are skipped)")
    parser.add_argument("--json", action="store_true", help="print JSON: {\"files\": [...]}")
    parser.add_argument("--limit", type=positive_int, default=DEFAULT_LIMIT, metavar="N",
                        help=f"stop a directory scan after N files (default {DEFAULT_LIMIT}); see --top")
    parser.add_argument("--sort", choices=SORT_KEYS, default="path",
                        help="order of the files of a directory scan (default path)")
    parser.add_argument("--top", type=positive_int, default=None, metavar="N",
                        help="show only the first N files in that order, of all scanned "
                             "(--sort cached --top 10: the ten most cached)")


def _sort_key(name: str):
    if name == "cached":
        return lambda s: -(s.cached_bytes or 0)
    if name == "size":
        return lambda s: -(s.size_bytes or 0)
    if name == "evicted":
        return lambda s: -(s.recently_evicted_bytes or 0)
    return lambda s: s.path


def collect(paths, *, recursive: bool, limit: int, sort: str = "path"):
    """Measure the paths. Returns (stats, notes for stderr, whether any path was bad)."""
    from memtop.model.pagecache import skipped_text
    from memtop.procfs.cachestat import file_cache_stat
    from memtop.procfs.treescan import TreeScanError, scan_tree

    stats = []
    notes: list[str] = []
    failed = False
    for path in paths:
        try:
            is_dir = stat_mod.S_ISDIR(os.stat(path).st_mode)
        except OSError:
            is_dir = False
        if is_dir and recursive:
            try:
                files, progress = scan_tree(path, limit=limit)
            except TreeScanError as e:
                notes.append(str(e))
                failed = True
                continue
            stats.extend(sorted(files, key=_sort_key(sort)))
            if progress.truncated:
                notes.append(f"{path}: stopped at {limit} files (--limit)")
            skipped = skipped_text(progress.skipped)
            if skipped:
                notes.append(f"{path}: skipped {skipped}")
            continue
        if is_dir:
            notes.append(f"{path}: a directory (add -r to scan the files under it)")
            failed = True
            continue
        result = file_cache_stat(path)  # a path the user typed: symlinks followed, like fincore
        if result.device is None:  # no such file, a FIFO, a device...
            failed = True
            notes.append(f"{path}: not measured ({result.reason})")
        stats.append(result)
    return stats, notes, failed


def file_json(stat) -> dict:
    doc = stat.as_json()
    return {key: doc[key] for key in JSON_KEYS}


def render_text(stats) -> str:
    from memtop.format import counted, fmt_bytes, fmt_percent
    from memtop.model.pagecache import one_per_inode

    if not stats:  # every path refused (a directory without -r...): only the notes, no empty table
        return ""
    lines = [f"{'CACHED':>10} {'%':>4} {'DIRTY':>10} {'RECENT-EVICT':>12} {'SIZE':>10}  PATH"]
    for s in stats:
        line = (f"{fmt_bytes(s.cached_bytes):>10} {fmt_percent(s.cached_fraction):>4} {fmt_bytes(s.dirty_bytes):>10} "
                f"{fmt_bytes(s.recently_evicted_bytes):>12} {fmt_bytes(s.size_bytes):>10}  {printable(s.path)}")
        if s.cached_bytes is None:
            line += f"  (? {printable(s.reason)})"
        lines.append(line)
    known = [s for s in stats if s.cached_bytes is not None]
    if len(stats) > 1:
        names = len(known)
        known = one_per_inode(known)  # a hard link's pages counted once (vmtouch does the same)
        cached = sum(s.cached_bytes for s in known)
        size = sum(s.size_bytes or 0 for s in known)
        # (as each file's: a partly cached last page counts whole, so at most 100 %)
        total = (f"{fmt_bytes(cached):>10} {fmt_percent(min(1.0, cached / size) if size else 0.0):>4} "
                 f"{fmt_bytes(sum(s.dirty_bytes or 0 for s in known)):>10} "
                 f"{fmt_bytes(sum(s.recently_evicted_bytes or 0 for s in known)):>12} {fmt_bytes(size):>10}  "
                 f"total of {counted(len(known), 'file')}")
        if names > len(known):
            links = names - len(known)
            total += f" (+{links} hard {'link' if links == 1 else 'links'} to them, counted once)"
        if names < len(stats):
            total += f" ({len(stats) - names} unknown, marked ?)"
        lines.append(total)
    # Counted by mincore(2): before Linux 6.5, or a stacked file (overlayfs) cachestat cannot see.
    for reason in sorted({s.reason for s in known if s.dirty_bytes is None and s.reason}):
        lines.append(f"({reason})")
    return "\n".join(lines) + "\n"


def run(args) -> int:
    stats, notes, failed = collect(args.paths, recursive=args.recursive, limit=args.limit, sort=args.sort)
    if args.top is not None and len(stats) > args.top:
        notes.append(f"{args.top} of {len(stats)} files shown (--top); the total is of those shown")
        stats = stats[:args.top]
    if args.json:
        # One write: json.dump would call write() once per token (~30 per file).
        sys.stdout.write(json_dumps({"files": [file_json(s) for s in stats]}, indent=1) + "\n")
    else:
        sys.stdout.write(render_text(stats))
    sys.stdout.flush()
    for note in notes:
        print(f"memtop: {printable(note)}", file=sys.stderr)
    return 1 if failed else 0
