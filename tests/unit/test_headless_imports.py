"""The headless core (everything but memtop/tui/) never imports Textual: `memtop snapshot` and the
exporter must start fast and run where there is no terminal."""

import pkgutil
import subprocess
import sys
from pathlib import Path

import memtop

ROOT = Path(memtop.__file__).resolve().parent.parent


def headless_modules() -> list[str]:
    names = []
    for info in pkgutil.walk_packages([str(ROOT / "memtop")], prefix="memtop."):
        if info.name in ("memtop.tui", "memtop.__main__") or info.name.startswith("memtop.tui."):
            continue
        names.append(info.name)
    return names


def test_there_are_headless_modules_to_check():
    names = headless_modules()
    assert "memtop.collect.sampler" in names and "memtop.cli" in names


def test_no_headless_module_imports_textual():
    code = (
        "import importlib, sys\n"
        f"for name in {headless_modules()!r}:\n"
        "    importlib.import_module(name)\n"
        "bad = sorted(m for m in sys.modules if m == 'textual' or m.startswith('textual.') or m == 'textual_plotext')\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"textual imported by the headless core: {out.stdout}"


def test_snapshot_command_runs_without_a_terminal():
    out = subprocess.run([sys.executable, "-m", "memtop", "snapshot", "--json"], capture_output=True, text=True,
                         cwd=ROOT, timeout=120, stdin=subprocess.DEVNULL)
    assert out.returncode == 0, out.stderr
    assert '"processes"' in out.stdout
