"""A hostile machine for the tests: processes, files and a tmpfs mount whose names any local user
could choose, built to drive root's terminal if memtop passed them through raw.

Every name carries one payload:
- an OSC title sequence and a screen clear (``exec -a $'x \\e]0;TITLE\\a\\e[2J' sleep 900``),
- an OSC 52 clipboard write,
- a newline followed by a fake row,
- a bidi override (U+202E) and isolates,
- bytes that are not UTF-8,
- Textual/Rich markup that would act if parsed (``[@click=app.quit]``),
and one process has a 1 MB command line.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unicodedata
from contextlib import contextmanager
from pathlib import Path

TITLE = b"x \x1b]0;PWNED-TITLE\x07\x1b[2J"
OSC52 = b"clip \x1b]52;c;UFdORUQtQ0xJUA==\x07"
NEWLINE = b"row1\nFAKE-ROW 1 root 9.99 GiB"
BIDI = "evil\u202egnp.exe \u2066iso\u2069".encode()
BADUTF8 = b"bad\xff\xfename\x9b2J"
MARKUP = b"[@click=app.quit]clickme[/] [b]bold"
PAYLOADS = {"title": TITLE, "osc52": OSC52, "newline": NEWLINE, "bidi": BIDI, "badutf8": BADUTF8, "markup": MARKUP}

# Raw bytes that must never reach a terminal or a text output.
RAW_MARKERS = (b"\x1b]0;PWNED", b"\x1b]52;", b"PWNED-TITLE\x07", "\u202e".encode(), "\u2066".encode(),
               b"\xff\xfe", b"\xc2\x9b")  # the last: C1 CSI encoded as UTF-8
UNSAFE_CATEGORIES = {"Cc", "Cf", "Zl", "Zp", "Cs"}

# A child that names itself (comm) and holds the hostile files open and mapped, then waits.
_HOLDER = r"""
import mmap, os, sys, time
name = sys.argv[1].encode("utf-8", "surrogateescape")
with open("/proc/self/comm", "wb") as f:
    f.write(name[:15])
maps = []
for path in sys.argv[2:]:
    if path == "--":  # what follows only makes the command line long
        break
    fd = os.open(path, os.O_RDONLY)
    maps.append((fd, mmap.mmap(fd, 0, prot=mmap.PROT_READ)))
sys.stdout.write("READY\n")
sys.stdout.flush()
time.sleep(3600)
"""


def assert_text_is_safe(data: bytes, what: str) -> str:
    """``data`` (a text output) is UTF-8 with no control character but newline, and no format,
    separator or surrogate character: nothing in it can act on a terminal. Returns the text."""
    for marker in RAW_MARKERS:
        assert marker not in data, f"{what}: raw {marker!r} in the output"
    text = data.decode("utf-8")  # strict: bytes that are not UTF-8 never pass through raw
    bad = sorted({f"U+{ord(ch):04X}" for ch in text if ch != "\n" and unicodedata.category(ch) in UNSAFE_CATEGORIES})
    assert not bad, f"{what}: {', '.join(bad)} in the output"
    return text


class HostileWorld:
    def __init__(self, root: Path):
        self.root = root
        self.files_dir = root / "files"
        self.files: list[Path] = []
        self.mount: Path | None = None
        self.mount_file: Path | None = None
        self.procs: dict[str, subprocess.Popen] = {}

    @property
    def pids(self) -> dict[str, int]:
        return {k: p.pid for k, p in self.procs.items()}

    def start(self) -> None:
        self.files_dir.mkdir()
        for key, payload in PAYLOADS.items():
            path = os.path.join(os.fsencode(self.files_dir), payload.replace(b"/", b"_"))
            with open(path, "wb") as f:
                f.write(os.urandom(1 << 20))
            with open(path, "rb") as f:  # cached
                while f.read(1 << 20):
                    pass
            self.files.append(Path(os.fsdecode(path)))
        if os.geteuid() == 0:
            # A tmpfs mounted on a directory with a hostile name, holding a hostile file.
            mount = os.path.join(os.fsencode(self.root), b"mnt " + TITLE + BADUTF8)
            os.mkdir(mount)
            subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", mount], check=True)
            self.mount = Path(os.fsdecode(mount))
            inside = os.path.join(mount, OSC52 + BIDI)
            with open(inside, "wb") as f:
                f.write(os.urandom(256 << 10))
            self.mount_file = Path(os.fsdecode(inside))
        for key, payload in PAYLOADS.items():
            args = [payload, "-c", _HOLDER, os.fsdecode(payload), *(str(p) for p in self.files)]
            if self.mount_file is not None and key == "osc52":
                args.append(str(self.mount_file))
            self._spawn(key, args)
        # A 1 MB command line (ten arguments of 100 kB: one argument may not exceed 128 kB).
        self._spawn("big", [b"big-cmdline", "-c", _HOLDER, "big", "--", *(["y" * 100_000] * 10)])

    def _spawn(self, key: str, args: list) -> None:
        proc = subprocess.Popen(args, executable=sys.executable, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, start_new_session=True)
        self.procs[key] = proc
        line = proc.stdout.readline()
        if line.strip() != b"READY":
            raise RuntimeError(f"hostile child {key} did not start: {proc.stderr.read()[-500:]!r}")

    def close(self) -> None:
        for proc in self.procs.values():
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=10)
        if self.mount is not None:
            for _ in range(50):
                if subprocess.run(["umount", os.fsencode(self.mount)], capture_output=True).returncode == 0:
                    break
                time.sleep(0.1)
            else:
                subprocess.run(["umount", "-l", os.fsencode(self.mount)], capture_output=True)


@contextmanager
def hostile_world():
    root = Path(tempfile.mkdtemp(prefix="memtop-hostile-"))
    world = HostileWorld(root)
    try:
        world.start()
        yield world
    finally:
        world.close()
        shutil.rmtree(root, ignore_errors=True)
