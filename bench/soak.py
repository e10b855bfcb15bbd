"""memtop's own RSS over a long run with every tab visited (issue 20, item 5; run by hand).

    .venv/bin/python bench/soak.py                         # 1,000 sleepers, 60 minutes
    .venv/bin/python bench/soak.py --procs 1000 --minutes 60 --dwell 20 --every 60
    .venv/bin/python bench/soak.py --root /tmp/memtop-at-commit   # a checkout: memtop from there

Starts --procs sleepers (bench/compare.py's population) and memtop (--interval, 2 s by default)
in tmux at 120x40, then shows its eight tabs in turn, --dwell seconds each, for --minutes. Every --every
seconds it prints memtop's VmRSS and RssAnon (/proc/PID/status), its CPU over that period (% of
one core) and the tab on screen. At the end: RSS after the first rotation of the tabs, at the
end and its maximum, and the least-squares slope of RSS from the end of the first rotation on,
in MiB per hour: flat means that slope is within noise (a few hundred KiB per hour). A run longer
than an hour (and its first rotation) also gets the last hour's slope alone, so a warm-up is told
apart from a steady climb.

With --layers, each reading also asks `memtop explain --json` (read-only: /proc/PID/mem, no
ptrace stop) where memtop's own memory is: glibc's heap in use and free-but-kept, CPython's
obmalloc blocks in use and its free room (free blocks in used pools + unused pools), and the slope
of each at the end: live objects that grow are a leak, free room that grows is fragmentation.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.compare import Population, Tmux, Tools, _check_alive, machine_procs, proc_cpu_s, screen_full  # noqa: E402

TABS = "12345678"


def status_kib(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile"):
            out[key] = int(value.split()[0])
    return out


LAYERS = ("glibc used", "glibc free", "py used", "py free")


def layers_mib(pid: int, root: Path) -> tuple[dict[str, float | None], str]:
    """memtop's own heap by layer (`memtop explain --json PID`), in MiB: glibc's live bytes and its
    resident free room (free chunks and top), obmalloc's live bytes and its free room. A layer
    explain could not read is None, with why (a walk that met the heap changing under it, or no
    obmalloc under PYTHONMALLOC=malloc)."""
    out: dict[str, float | None] = dict.fromkeys(LAYERS)
    try:
        r = subprocess.run([sys.executable, "-m", "memtop", "explain", "--json", str(pid)], cwd=root,
                           capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        return out, "memtop explain took over 120 s"
    try:
        report = json.loads(r.stdout)
    except ValueError:
        return out, f"memtop explain printed no JSON: {r.stderr.strip()[-200:]!r}"
    mib = 1 << 20
    why = []
    glibc = report.get("allocator") or {}
    if glibc.get("in_use_bytes") is not None and glibc.get("heap_split"):
        out["glibc used"] = glibc["in_use_bytes"] / mib
        out["glibc free"] = (glibc["heap_split"]["free"] + glibc["heap_split"]["top"]) / mib
    else:
        why.append(f"glibc: {glibc.get('reason')}")
    runtime = (report.get("runtime") or {}).get("report") or {}
    figures = runtime.get("figures") or {}
    try:
        out["py used"] = figures["allocated_bytes"]["value"] / mib
        out["py free"] = (figures["available_bytes"]["value"] + figures["free_pools_bytes"]["value"]) / mib
    except (KeyError, TypeError):
        why.append(f"obmalloc: {runtime.get('reason')}")
    return out, "; ".join(why)


def slope_per_hour(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of (seconds, MiB) points, in MiB per hour."""
    if len(points) < 3:
        return None
    n = len(points)
    mx = sum(t for t, _ in points) / n
    my = sum(v for _, v in points) / n
    sxx = sum((t - mx) ** 2 for t, _ in points)
    if sxx == 0:
        return None
    return sum((t - mx) * (v - my) for t, v in points) / sxx * 3600


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--procs", type=int, default=1000)
    ap.add_argument("--minutes", type=float, default=60)
    ap.add_argument("--dwell", type=float, default=20, help="seconds on each tab")
    ap.add_argument("--every", type=float, default=60, help="seconds between RSS readings")
    ap.add_argument("--interval", type=float, default=2.0,
                    help="memtop's --interval: 0.5 makes an hour's ticks in 15 minutes (a quick first look)")
    ap.add_argument("--root", type=Path, default=ROOT, help="the memtop checkout to run")
    ap.add_argument("--layers", action="store_true", help="also memtop's heap by layer (memtop explain)")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="memtop-soak-"))
    tools = Tools(tmp)
    pop = Population()
    tm = None
    try:
        pop.grow_to(args.procs)
        tm = Tmux(tools.env)
        tm.run([sys.executable, "-m", "memtop", "--interval", f"{args.interval:g}"], args.root)
        t0 = time.monotonic()
        while not screen_full("memtop", tm.capture()):
            if time.monotonic() - t0 > 60:
                raise SystemExit(f"memtop showed no full screen in 60 s:\n{tm.capture()}")
            time.sleep(0.2)
        pid = tm.pane_pid()
        print(f"memtop {pid} from {args.root}, {machine_procs()} processes, {args.minutes:g} min, "
              f"{args.dwell:g} s per tab, RSS every {args.every:g} s, memtop --interval {args.interval:g}", flush=True)
        print(f"{'min':>6} {'tab':>3} {'VmRSS MiB':>10} {'RssAnon':>8} {'CPU %':>6}"
              + "".join(f" {name:>10}" for name in LAYERS if args.layers), flush=True)
        start = time.monotonic()
        end = start + args.minutes * 60
        next_read = start
        next_tab = start
        tab_i = 0
        cpu_prev, t_prev = proc_cpu_s(pid), start
        rotation_done_at = None
        points: list[tuple[float, float]] = []
        layer_points: dict[str, list[tuple[float, float]]] = {name: [] for name in LAYERS}
        while True:
            now = time.monotonic()
            if now >= next_tab:
                tm.keys(TABS[tab_i % len(TABS)])
                tab_i += 1
                if tab_i == len(TABS) + 1 and rotation_done_at is None:
                    rotation_done_at = now
                next_tab += args.dwell
            if now >= next_read:
                _check_alive(tm, pid, "memtop")
                kib = status_kib(pid)
                cpu = proc_cpu_s(pid)
                cpu_pct = f"{100 * (cpu - cpu_prev) / (now - t_prev):6.2f}" if now - t_prev > 1 else "     -"
                cpu_prev, t_prev = cpu, now
                rss = kib["VmRSS"] / 1024
                points.append((now - start, rss))
                line = (f"{(now - start) / 60:6.1f} {TABS[(tab_i - 1) % len(TABS)]:>3} {rss:10.1f} "
                        f"{kib['RssAnon'] / 1024:8.1f} {cpu_pct}")
                if args.layers:
                    layers, why = layers_mib(pid, args.root)
                    for name, value in layers.items():
                        if value is not None:
                            layer_points[name].append((now - start, value))
                        line += f" {value:10.1f}" if value is not None else f" {'?':>10}"
                    line += f"  ({why})" if why else ""
                print(line, flush=True)
                next_read += args.every
            if now >= end:
                break
            time.sleep(max(0.05, min(next_read, next_tab, end) - time.monotonic()))
        after_rotation = [(t, v) for t, v in points if rotation_done_at is not None and t >= rotation_done_at - start]
        slope = slope_per_hour(after_rotation)
        first = after_rotation[0][1] if after_rotation else None
        print(f"RSS after the first rotation {first if first is None else f'{first:.1f}'} MiB, at the end "
              f"{points[-1][1]:.1f} MiB, max {max(v for _, v in points):.1f} MiB; slope from the first rotation on: "
              f"{'?' if slope is None else f'{slope:+.2f}'} MiB/hour ({len(after_rotation)} readings)")
        last_hour = [(t, v) for t, v in points if t >= points[-1][0] - 3600]
        if points[-1][0] >= 3600 + (rotation_done_at or start) - start + 600:  # a run well past an hour
            s_hour = slope_per_hour(last_hour)
            print(f"the last hour alone: {last_hour[0][1]:.1f} -> {last_hour[-1][1]:.1f} MiB, max "
                  f"{max(v for _, v in last_hour):.1f}; slope {'?' if s_hour is None else f'{s_hour:+.2f}'} MiB/hour")
        if args.layers and rotation_done_at is not None:
            for name in LAYERS:
                later = [(t, v) for t, v in layer_points[name] if t >= rotation_done_at - start]
                if not later:
                    print(f"  {name}: unknown at every reading")
                    continue
                s = slope_per_hour(later)
                print(f"  {name}: {later[0][1]:.1f} -> {later[-1][1]:.1f} MiB, "
                      f"{'?' if s is None else f'{s:+.2f}'} MiB/hour")
    finally:
        if tm is not None:
            tm.close()
        pop.close()


if __name__ == "__main__":
    main()
