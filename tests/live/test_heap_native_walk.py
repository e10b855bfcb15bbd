"""The native loop of the heap walk is part of the installed package, never code from a cache.

Up to a1cc421 memtop compiled its walk loop into ``$XDG_CACHE_HOME/memtop/walk-<hash>.so`` on
first use and loaded whatever file had that name: anyone who could write that directory (a
user's own ~/.cache under ``sudo -E``, a shared XDG_CACHE_HOME) got code run as root (issue 15,
item 2). Now the loop is the extension module memtop.heap._walk, built at install time.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

import memtop
from memtop.heap import native
from tests.heap_targets import HEAP_TARGET
from tests.support import IS_ROOT, compile_c

REPO = Path(__file__).resolve().parents[2]
# The file name memtop up to a1cc421 loaded (sha256 of its C source, 16 hex digits).
OLD_NAME = "walk-7d34000207cb3991.so"

EVIL = r"""
#include <fcntl.h>
#include <unistd.h>
#include <stdint.h>
__attribute__((constructor)) static void planted(void) {
    int fd = open(MARKER, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) { write(fd, "loaded\n", 7); close(fd); }
    _exit(42); /* a real attacker's code would go on as root; this one stops the test's process */
}
int memtop_walk(void) { return 0; }
"""


def files_under(path: Path) -> set[str]:
    return {str(p.relative_to(path)) for p in path.rglob("*")}


@pytest.mark.live
@pytest.mark.skipif(not IS_ROOT, reason="reading another process's heap needs root (or CAP_SYS_PTRACE)")
def test_a_library_planted_in_the_cache_directory_is_never_loaded(children, gcc, tmp_path):
    # GIVEN a cache directory any user can write, holding a library under the name memtop used to
    # load, whose constructor leaves a marker when it is loaded
    cache, home = tmp_path / "cache", tmp_path / "home"
    marker = tmp_path / "marker"
    for base in (cache / "memtop", home / ".cache" / "memtop"):
        base.mkdir(parents=True)
        base.chmod(0o777)
        src = tmp_path / "evil.c"
        src.write_text(EVIL)
        subprocess.run(["gcc", "-shared", "-fPIC", f'-DMARKER="{marker}"', "-o", str(base / OLD_NAME), str(src)],
                       check=True, capture_output=True)
    before = files_under(cache) | files_under(home)
    target = children.start([compile_c(HEAP_TARGET, name="heap_target"), "inuse"])
    # WHEN root walks a heap with that environment (as under `sudo -E`)
    code = ("import sys; from memtop.heap import analyze, native; r = analyze(int(sys.argv[1])); "
            "print(r.status, r.chunks_walked, native.origin())")
    env = dict(os.environ, XDG_CACHE_HOME=str(cache), HOME=str(home))
    env.pop("MEMTOP_PURE_PYTHON", None)
    done = subprocess.run([sys.executable, "-c", code, str(target.pid)], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120)
    # THEN the planted library was not loaded, the walk ran, and nothing was built or written there
    assert not marker.exists(), "the planted library was loaded"
    assert done.returncode == 0, done.stderr
    status, chunks, origin = done.stdout.split()
    assert status == "valid" and int(chunks) > 100000
    assert files_under(cache) | files_under(home) == before
    # AND the native loop, when there is one, is a file of the installed package
    if origin != "None":
        assert Path(origin).resolve().parent == Path(memtop.__file__).resolve().parent / "heap"


def test_the_extension_is_built_where_it_can_be():
    # `make setup` installs gcc, and the Python headers when they are missing: there the
    # extension must have been built (else the walk silently runs 2-3x slower).
    headers = Path(sysconfig.get_paths()["include"]) / "Python.h"
    if shutil.which("gcc") is None or not headers.exists():
        pytest.skip("no C compiler or no Python headers: the pure-Python walk is expected")
    if not native.enabled:
        pytest.skip("MEMTOP_PURE_PYTHON is set")
    assert native.load() is not None, native.build_error
    assert Path(native.origin()).resolve().parent == Path(memtop.__file__).resolve().parent / "heap"


def test_the_extension_refuses_a_limit_past_its_window():
    walker = native.load()
    if walker is None:
        pytest.skip(f"no native loop: {native.build_error}")
    data = bytearray(64)
    # Chunk k reads words k+1 and k+3: with 8 words, limit 4 would read word 6 (fine) but 5 would
    # read past (k=4: words 5 and 7 are inside; the caller's bound is (len - 32) // 8 = 4).
    assert walker(data, 4, [], [], 0, [], [])[3] == 2  # zero sizes: stops at once, status ZERO
    with pytest.raises(ValueError):
        walker(data, 5, [], [], 0, [], [])
    with pytest.raises(ValueError):
        walker(bytearray(16), 1, [], [], 0, [], [])
    with pytest.raises(ValueError):
        walker(data, 4, [3, 1], [], 0, [], [])  # stops must be sorted
