"""Live: glibc debug symbols found inside a container's root (issue 17, item 4).

GIVEN a small root filesystem made for the test (the host's libc.so.6 and ld.so, a target built
with gcc, and the host's libc6-dbg debug file copied under its build-id path) and a target
process chrooted into it,
WHEN memtop looks for the libc's debug file in a mount namespace where the host's
/usr/lib/debug/.build-id is hidden under an empty tmpfs (so the host lacks the file),
THEN it finds the container's own file through /proc/PID/root, and the heap walk uses it
("debug" symbols, the same main_arena as the heuristics); a file with another build-id, a
link pointing outside the container and a /proc magic link are refused.

The namespace and the chroot are made with unshare(1) and chroot(8); everything is removed at the
end (the namespace dies with its process).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from memtop.heap.elf import ElfFile
from tests.support import Child, compile_c

pytestmark = pytest.mark.live

LIBC = Path("/lib/x86_64-linux-gnu/libc.so.6")
LDSO = Path("/lib64/ld-linux-x86-64.so.2")
REPO = Path(__file__).resolve().parents[2]

TARGET = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
int main(void) {
    void *keep[64];
    for (int i = 0; i < 64; i++) { keep[i] = malloc(1000 + 37 * i); memset(keep[i], 1, 1000); }
    for (int i = 0; i < 64; i += 2) free(keep[i]);
    printf("READY\n"); fflush(stdout);
    char line[64];
    while (fgets(line, sizeof line, stdin)) { printf("OK\n"); fflush(stdout); }
    return 0;
}
"""

# Run inside the namespace: what memtop finds for the target, as JSON on stdout.
PROBE = r"""
import json, sys
from memtop.heap import analyze, glibc
pid, build_id = int(sys.argv[1]), sys.argv[2]
offsets, path, tried = glibc.debug_lookup(build_id, pid)
out = {"host_file": str(glibc.debug_file_for(build_id)), "path": path, "tried": tried,
       "main_arena": offsets["main_arena"] if offsets else None}
if len(sys.argv) > 3:
    report = analyze(pid)
    image = glibc.LibcImage(str(sys.argv[3]), str(sys.argv[3]), 0, (2, 36), build_id, ())
    out.update(status=report.status, symbols=report.symbols, valid=report.valid,
               heuristic_main_arena=glibc.heuristic_offsets(image)["main_arena"])
print(json.dumps(out))
"""


def _needs():
    if os.geteuid() != 0:
        pytest.skip("needs root (chroot, a mount namespace)")
    for tool in ("unshare", "chroot"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    if not LIBC.exists() or not LDSO.exists():
        pytest.skip("no x86_64 glibc at the Debian paths")


@pytest.fixture(scope="module")
def host_debug():
    _needs()
    build_id = ElfFile(LIBC.read_bytes()).build_id()
    path = Path("/usr/lib/debug/.build-id") / build_id[:2] / f"{build_id[2:]}.debug"
    if not path.is_file():
        pytest.fail(f"libc6-dbg is missing ({path}): `make test` installs it (scripts/setup.sh --test)")
    return build_id, path


@pytest.fixture
def container(tmp_path, host_debug, gcc):
    """A root with libc, ld.so and the target; the target running chrooted into it, in its own
    mount namespace with a procfs mounted at <root>/proc (as a container has)."""
    build_id, _ = host_debug
    root = tmp_path / "root"
    (root / "lib/x86_64-linux-gnu").mkdir(parents=True)
    (root / "lib64").mkdir()
    (root / "proc").mkdir()
    shutil.copy2(LIBC, root / "lib/x86_64-linux-gnu/libc.so.6")
    shutil.copy2(LDSO, root / "lib64/ld-linux-x86-64.so.2")
    shutil.copy2(compile_c(TARGET, name="debug-in-root"), root / "target")
    child = Child(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                   'mount -t proc proc "$0/proc" && exec chroot "$0" /target', str(root)])
    try:
        yield root, child, build_id
    finally:
        child.close()


def probe(pid: int, build_id: str, walk: bool = False) -> dict:
    """Run PROBE in a new mount namespace whose /usr/lib/debug/.build-id is an empty tmpfs."""
    args = [sys.executable, "-c", PROBE, str(pid), build_id] + ([str(LIBC)] if walk else [])
    script = 'mount -t tmpfs -o size=1m memtop-test-empty /usr/lib/debug/.build-id && exec "$@"'
    done = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", *args],
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def debug_path_in(root: Path, build_id: str) -> Path:
    return root / "usr/lib/debug/.build-id" / build_id[:2] / f"{build_id[2:]}.debug"


def test_the_containers_own_libc6_dbg_is_used_when_the_host_lacks_it(container, host_debug):
    root, child, build_id = container
    # Without the file in the container either: nothing found, and it says where it looked.
    nothing = probe(child.pid, build_id)
    assert nothing["host_file"] == "None" and nothing["path"] is None
    assert f"/proc/{child.pid}/root/usr/lib/debug/.build-id" in nothing["tried"]

    target = debug_path_in(root, build_id)
    target.parent.mkdir(parents=True)
    shutil.copy2(host_debug[1], target)
    found = probe(child.pid, build_id, walk=True)
    assert found["host_file"] == "None"  # the host's file is hidden in the probe's namespace
    assert found["path"] == f"/proc/{child.pid}/root/usr/lib/debug/.build-id/{build_id[:2]}/{build_id[2:]}.debug"
    assert found["status"] == "valid" and found["valid"], found
    assert found["symbols"] == "debug"
    assert found["main_arena"] == found["heuristic_main_arena"]


def test_a_relative_link_inside_the_root_is_followed_like_fedoras_build_id_links(container, host_debug):
    root, child, build_id = container
    real = root / "usr/lib/debug/lib/x86_64-linux-gnu/libc.so.6.debug"
    real.parent.mkdir(parents=True)
    shutil.copy2(host_debug[1], real)
    link = debug_path_in(root, build_id)
    link.parent.mkdir(parents=True)
    link.symlink_to("../../lib/x86_64-linux-gnu/libc.so.6.debug")
    assert probe(child.pid, build_id)["main_arena"] is not None
    # An absolute link is resolved in the container's root too ("/usr/lib/debug/..." of the container).
    link.unlink()
    link.symlink_to("/usr/lib/debug/lib/x86_64-linux-gnu/libc.so.6.debug")
    assert probe(child.pid, build_id)["main_arena"] is not None


def test_links_out_of_the_root_and_wrong_files_are_refused(container, host_debug, tmp_path):
    root, child, build_id = container
    # A copy of the debug file outside the container root, at a path that exists on the host.
    outside = tmp_path / "outside" / "libc.debug"
    outside.parent.mkdir()
    shutil.copy2(host_debug[1], outside)
    link = debug_path_in(root, build_id)
    link.parent.mkdir(parents=True)
    link.symlink_to(str(outside))  # absolute: inside the root it names root/<outside>, which is absent
    refused = probe(child.pid, build_id)
    assert refused["path"] is None and "does not exist" in refused["tried"]
    link.unlink()
    link.symlink_to("../../../../../../../../../../" + str(outside).lstrip("/"))  # .. stops at the root
    assert probe(child.pid, build_id)["path"] is None
    link.unlink()
    # A /proc magic link: in the container's /proc, self/root is the reader's own root (the
    # host's), where this path exists; RESOLVE_NO_MAGICLINKS refuses to jump through it.
    link.symlink_to("/proc/self/root" + str(outside))
    magic = probe(child.pid, build_id)
    assert magic["path"] is None and "magic link" in magic["tried"], magic
    link.unlink()
    # A debug file with another build-id under the libc's name: read, checked, refused.
    other = next(p for p in sorted(host_debug[1].parent.parent.glob("*/*.debug")) if p != host_debug[1])
    shutil.copy2(other, link)
    wrong = probe(child.pid, build_id)
    assert wrong["path"] is None and "not the libc's" in wrong["tried"]
    # A FIFO does not block the reader.
    link.unlink()
    os.mkfifo(link)
    fifo = probe(child.pid, build_id)
    assert fifo["path"] is None and "not a regular file" in fifo["tried"]
