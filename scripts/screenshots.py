"""Make an SVG and a PNG of every tab from a real run on this machine, into screenshots/.

    .venv/bin/python scripts/screenshots.py        (or: make screenshots)

Starts a demo process (scripts/demo_target.c: a drained 200 MiB heap, thread arenas, a deleted
file in /dev/shm, sockets), runs memtop on the live /proc with it selected, waits for real ticks
and saves each tab. PNGs come from rsvg-convert (Debian librsvg2-bin) or headless Chromium,
with Fira Code (Debian fonts-firacode) when installed.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from memtop.tui.app import TABS, MemtopApp  # noqa: E402
from memtop.tui.processes import ProcessTable  # noqa: E402

OUT = ROOT / "screenshots"
SIZE = (120, 40)


def build_demo() -> Path:
    binary = Path(tempfile.gettempdir()) / "memtop-demo-target"
    subprocess.run(["gcc", "-O1", "-pthread", "-o", str(binary), str(ROOT / "scripts" / "demo_target.c")], check=True)
    return binary


def to_png(svg: Path) -> Path | None:
    png = svg.with_suffix(".png")
    text = svg.read_text()
    if "xml:space" not in text:  # rsvg-convert collapses the spaces of terminal text without it
        text = text.replace("<svg ", '<svg xml:space="preserve" ', 1)
    fixed = svg.with_suffix(".tmp.svg")
    fixed.write_text(text)
    try:
        if shutil.which("rsvg-convert"):
            subprocess.run(["rsvg-convert", "-o", str(png), str(fixed)], check=True)
            return png
        chromium = shutil.which("chromium") or shutil.which("chromium-browser")
        if chromium:
            with tempfile.TemporaryDirectory() as profile:
                subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                                "--disable-background-networking", f"--user-data-dir={profile}",
                                f"--screenshot={png}", "--window-size=1500,1050", fixed.as_uri()],
                               check=True, capture_output=True, timeout=120)
            return png
        print("no rsvg-convert or chromium: SVG only (apt-get install librsvg2-bin)", file=sys.stderr)
        return None
    finally:
        fixed.unlink()


async def shoot(demo_pid: int) -> list[Path]:
    app = MemtopApp(interval=1.0, pid=demo_pid)
    saved = []
    async with app.run_test(size=SIZE) as pilot:
        await asyncio.sleep(12)  # real ticks: the demo's spike, and history for the chart
        table = app.query_one(ProcessTable)
        table.focus()
        table.select_pid(demo_pid)
        await pilot.pause()
        for index, tab in enumerate(TABS):
            await pilot.press(str(index + 1))
            await asyncio.sleep(6 if index else 1)  # let the tab's own workers answer
            await pilot.pause()
            name = f"{index + 1}-{tab.id}.svg"
            app.save_screenshot(filename=name, path=str(OUT))
            saved.append(OUT / name)
    return saved


def main() -> int:
    OUT.mkdir(exist_ok=True)
    demo = subprocess.Popen([build_demo()], stdout=subprocess.PIPE, start_new_session=True)
    try:
        if demo.stdout.readline().strip() != b"READY":
            print("the demo target did not start", file=sys.stderr)
            return 1
        for svg in asyncio.run(shoot(demo.pid)):
            png = to_png(svg)
            print(svg.relative_to(ROOT), "and", png.relative_to(ROOT) if png else "no PNG")
    finally:
        os.killpg(demo.pid, signal.SIGKILL)
        demo.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
