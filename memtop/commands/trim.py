"""``memtop trim PID [--yes] [--timeout S] [--follow S] [--json]``: predict, malloc_trim(0), report."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from memtop.actions import identity_of, unavailable_reason
from memtop.commands import CliError, pid_arg
from memtop.format import fmt_bytes, fmt_rate
from memtop.text import json_safe, printable

NAME = "trim"
HELP = ("run malloc_trim(0) (or jemalloc's, tcmalloc's or mimalloc's own release) in a process through gdb, "
        "safely; report predicted vs actual RSS drop")

EXIT_REFUSED = 1


def _seconds(*, positive: bool):
    """An argparse type: a finite number of seconds, > 0 or >= 0; anything else is a usage error
    (argparse prints the usage and exits 2)."""
    import argparse
    import math

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
        if not math.isfinite(value) or (value <= 0 if positive else value < 0):
            raise argparse.ArgumentTypeError(f"must be {'more than' if positive else 'at least'} 0 seconds: {text!r}")
        return value

    parse.__name__ = "seconds"
    return parse



def add_arguments(parser) -> None:
    parser.add_argument("pid", type=pid_arg, metavar="PID", help="the process to trim")
    parser.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    parser.add_argument("--timeout", type=_seconds(positive=True), default=5.0, metavar="S",
                        help="give up on a held arena lock, and interrupt the call, after S seconds (default 5)")
    parser.add_argument("--follow", type=_seconds(positive=False), default=None, metavar="S",
                        help="then follow RSS and minor faults for S seconds (default 60 in text mode, 0 with --json)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def run(args) -> int:
    from memtop.actions import trim as trim_action

    root = Path(args.proc)
    reason = unavailable_reason("trim", read_only=getattr(args, "read_only", False), target_uid=_uid(root, args.pid))
    if reason:
        raise CliError(reason)
    identity = identity_of(args.pid, root)
    if identity is None:
        raise CliError(f"no process with PID {args.pid}")
    follow_s = args.follow if args.follow is not None else (0.0 if args.json else 60.0)

    prediction = trim_action.predict(identity, root)
    out = sys.stderr if args.json else sys.stdout
    if prediction.refusal is None and (not args.json or not args.yes):
        print(describe_prediction(identity.pid, prediction), file=out)
    if not args.yes and prediction.refusal is None:
        if not sys.stdin.isatty():
            raise CliError("not a terminal: add --yes to trim without a confirmation")
        try:
            question = (f"Nothing would be released: trim PID {identity.pid} anyway? [y/N] "
                        if prediction.release_bytes == 0 else f"Trim PID {identity.pid}? [y/N] ")
            out.write(question)  # never on stdout: --json output stays clean
            out.flush()
            answer = input()
        except EOFError:
            answer = ""
        if answer.strip().lower() not in ("y", "yes"):
            print("nothing done", file=out)
            return 1

    result = trim_action.trim(identity, timeout=args.timeout, root=root, prediction=prediction)
    summary = None
    if result.ok and follow_s > 0:
        points = []
        if not args.json:
            print(describe_result(result))
            print(f"following PID {identity.pid} for {follow_s:g} s (Ctrl-C stops)...")
        try:
            for point in trim_action.follow(result, duration_s=follow_s, root=root):
                points.append(point)
                if not args.json and (len(points) % 10 == 0):
                    print(f"  +{point.seconds_after:4.0f}s  RSS {fmt_bytes(point.rss_bytes)}  "
                          f"minor faults {fmt_rate(point.minflt_per_s)}")
        except KeyboardInterrupt:
            pass
        summary = trim_action.summarize_follow(result, points)
    if args.json:
        doc = result.as_json()
        if summary is not None:
            doc["follow"] = {
                "seconds": round(summary.seconds, 1),
                "regrowth_bytes": summary.regrowth_bytes,
                "minflt_per_s": summary.minflt_per_s,
                "came_back": summary.came_back,
                "finding": summary.finding,
                "points": [{"s": round(p.seconds_after, 2), "rss_bytes": p.rss_bytes, "minflt_per_s": p.minflt_per_s}
                           for p in summary.points],
            }
        json.dump(json_safe(doc), sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        if summary is None:
            print(describe_result(result))
        else:
            print(printable(summary.finding))
    if result.log_warning:
        print(f"memtop: {printable(result.log_warning)}", file=sys.stderr)
    return 0 if result.ok else EXIT_REFUSED


def _uid(root: Path, pid: int) -> int | None:
    try:
        return (root / str(pid)).stat().st_uid
    except OSError:
        return None


def describe_prediction(pid: int, prediction) -> str:
    """One line (reasons quote the system: paths, names; shown with printable())."""
    if prediction.refusal:
        return f"cannot trim: {printable(prediction.refusal)}"
    call = getattr(prediction, "call", "malloc_trim(0)")
    if prediction.release_bytes == 0:
        why = printable(prediction.reason) if prediction.reason else "e.g. right after a trim"
        return (f"PID {pid}: nothing would be released: the heap walk finds no resident free page for "
                f"{call} to give back ({why}); trimming would stop the process for about "
                f"{prediction.estimated_stop_s * 1000:.0f} ms for nothing")
    if prediction.release_bytes is not None:
        what = f"the heap walk predicts RSS will drop by {fmt_bytes(prediction.release_bytes)}"
    else:
        what = f"no prediction ({printable(prediction.reason)})"
    stop = getattr(prediction, "stop", None)
    upto = f" (up to {stop.max_seconds * 1000:.0f} ms if gdb must attach again)" if stop is not None else ""
    return (f"PID {pid}: {what}; the process will be stopped for about "
            f"{prediction.estimated_stop_s * 1000:.0f} ms{upto} while gdb calls {call}")


def describe_result(result) -> str:
    """Lines for a terminal: the message and notes quote the system (process names, paths), so
    each goes through printable()."""
    lines = [f"{result.status}: {printable(result.message)}"]
    if result.ok:
        predicted = result.prediction.release_bytes if result.prediction else None
        lines.append(f"  predicted {fmt_bytes(predicted)}, heap released {fmt_bytes(result.heap_released_bytes)}; "
                     f"RSS {fmt_bytes(result.rss_before)} -> {fmt_bytes(result.rss_after)}; "
                     f"stopped for {_ms(result.stopped_s)} (estimated {_ms(result.prediction.estimated_stop_s)})")
    elif result.stopped_s is not None:
        lines.append(f"  the process was stopped for {_ms(result.stopped_s)} and is running again"
                     + (f" (estimated {_ms(result.prediction.estimated_stop_s)})" if result.prediction else ""))
    for note in result.notes:
        if note not in ("detached",) and not note.startswith("attached to"):
            lines.append(f"  note: {printable(note)}")
    return "\n".join(lines)


def _ms(seconds: float | None) -> str:
    return "?" if seconds is None else f"{seconds * 1000:.0f} ms"
