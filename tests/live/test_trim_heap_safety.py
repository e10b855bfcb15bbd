"""Heap safety of trim on real processes (issue 15, item 7).

- a process that never called malloc has an empty heap, not a corrupt one;
- a heap memtop calls corrupt is never trimmed (`memtop trim --yes`, and the TUI's `t` then `y`);
- a heap no read-only walk could validate is trimmed only after a walk with the process stopped
  is valid;
- a zombie is refused as a zombie, a kernel thread as a kernel thread.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from memtop.actions import identity_of, trim
from memtop.heap import analyze
from tests.actions_support import target_binary
from tests.support import IS_ROOT, compile_c, wait_until

pytestmark = [pytest.mark.live, pytest.mark.skipif(not IS_ROOT, reason="reads and calls into other processes: needs root")]

REPO = Path(__file__).resolve().parents[2]

# No malloc anywhere: raw write(2)/read(2), no stdio (stdio would malloc its buffers).
NO_MALLOC = r"""
#include <string.h>
#include <unistd.h>
int main(void) {
    char line[64];
    write(1, "READY\n", 6);
    for (;;) {
        ssize_t n = read(0, line, sizeof line);
        if (n <= 0) return 0;
        if (n >= 4 && !memcmp(line, "ping", 4)) write(1, "pong\n", 5);
    }
}
"""

# malloc, then the size field of a chunk overwritten: the heap is damaged the way a buffer
# underflow damages it. glibc itself would abort at the next free/consolidation touching it.
CORRUPT = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
static char inbuf[256], outbuf[256];
int main(void) {
    setvbuf(stdout, outbuf, _IOLBF, sizeof outbuf);
    setvbuf(stdin, inbuf, _IOLBF, sizeof inbuf);
    char *keep[64];
    for (int i = 0; i < 64; i++) { keep[i] = malloc(5000); memset(keep[i], i, 5000); }
    for (int i = 0; i < 64; i += 2) free(keep[i]);   /* free chunks for malloc_trim to visit */
    ((size_t *)keep[33])[-1] = 0x1234560;            /* a chunk header overwritten */
    printf("READY %p\n", (void *)(keep[33] - 16));
    char line[64];
    while (fgets(line, sizeof line, stdin)) printf("pong\n");
    return 0;
}
"""


@pytest.fixture(autouse=True)
def state_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    return tmp_path / "state"


def audit_lines(state_home: Path) -> list[dict]:
    path = state_home / "memtop" / "actions.log"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def memtop_cli(*args, timeout=60):
    return subprocess.run([sys.executable, "-m", "memtop", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL, env=dict(os.environ))


def state_of(pid: int) -> str:
    with open(f"/proc/{pid}/stat", "rb") as f:  # bytes: a name need not be UTF-8
        return f.read().rsplit(b")", 1)[1].split()[0].decode()


def assert_untouched(child) -> None:
    assert child.alive() and state_of(child.pid) not in ("T", "t")
    assert child.ask("ping") == "pong"
    with open(f"/proc/{child.pid}/status") as f:
        assert "TracerPid:\t0" in f.read()


def test_a_process_that_never_called_malloc_has_an_empty_heap(children, gcc):
    # GIVEN a process that never called malloc (no [heap], main_arena.top still 0)
    child = children.start([compile_c(NO_MALLOC, name="no_malloc")])
    with open(f"/proc/{child.pid}/maps") as f:
        assert "[heap]" not in f.read()
    # WHEN memtop walks it
    report = analyze(child.pid)
    # THEN it is an empty heap: valid, no chunk, nothing to release, not "corrupt"
    assert report.valid and report.status == "valid", report.reason
    assert report.chunks_walked == 0 and report.trim_release_bytes == 0
    assert [a.system_bytes for a in report.arenas] == [0]
    prediction = trim.predict(identity_of(child.pid))
    assert prediction.refusal is None and prediction.release_bytes == 0
    assert not prediction.validate_when_stopped
    # AND explain says so in plain words
    done = memtop_cli("explain", str(child.pid))
    assert done.returncode == 0, done.stderr
    assert "corrupt" not in done.stdout and "heap walked read-only" in done.stdout
    assert_untouched(child)


def test_trim_yes_never_trims_a_heap_memtop_calls_corrupt(children, gcc, state_home):
    # GIVEN a process whose heap memtop's walk calls corrupt
    child = children.start([compile_c(CORRUPT, name="trim_corrupt")])
    bad_chunk = int(child.ready_line.split()[1], 16)
    assert analyze(child.pid).status == "corrupt"
    # WHEN `memtop trim --yes` is run on it
    done = memtop_cli("trim", str(child.pid), "--yes", "--json")
    # THEN it is refused with the walk's finding, gdb never attached, and the process is as it was
    assert done.returncode == 1, done.stdout + done.stderr
    result = json.loads(done.stdout)
    assert result["status"] == "refused"
    assert "corrupt" in result["message"] and f"0x{bad_chunk:x}" in result["message"]
    assert result["stopped_ms"] is None and result["notes"] == []
    assert_untouched(child)
    (line,) = audit_lines(state_home)
    assert line["action"] == "trim" and line["result"]["status"] == "refused"
    # AND in text mode too, in one line
    done = memtop_cli("trim", str(child.pid), "--yes")
    assert done.returncode == 1 and done.stdout.startswith("refused: memtop's heap walk finds the heap")
    assert_untouched(child)


async def test_t_then_y_never_trims_a_heap_memtop_calls_corrupt(children, gcc, state_home):
    from memtop.tui.actions import TrimScreen
    from memtop.tui.app import MemtopApp
    from memtop.tui.processes import ProcessTable

    child = children.start([compile_c(CORRUPT, name="trim_corrupt")])
    app = MemtopApp(sample=False)
    async with app.run_test(size=(120, 40)) as pilot:
        app.tick()
        await pilot.pause()
        table = app.query_one(ProcessTable)
        assert table.select_pid(child.pid)
        table.focus()
        await pilot.pause()
        # WHEN t is pressed on it, and y
        await pilot.press("t")
        screen = app.screen
        assert isinstance(screen, TrimScreen)
        deadline = time.monotonic() + 60
        while screen.phase == "predicting" and time.monotonic() < deadline:
            await pilot.pause(0.05)
        # THEN the dialog refuses, says why, and y does nothing
        assert screen.phase == "refused"
        text = str(screen.query_one("#action-text").render())
        assert "Cannot trim" in text and "corrupt" in text
        await pilot.press("y")
        await pilot.pause(0.5)
        assert screen.phase == "refused" and screen.result is None
        await pilot.press("escape")
    assert audit_lines(state_home) == []
    assert_untouched(child)


def test_a_walk_that_cannot_be_validated_even_stopped_is_not_trimmed(children, gcc):
    # GIVEN a prediction that asks for a walk with the process stopped (what a heap that changed
    # under every read-only walk gets), on a heap that is in fact damaged
    child = children.start([compile_c(CORRUPT, name="trim_corrupt")])
    identity = identity_of(child.pid)
    from memtop.heap import gdb

    prediction = trim.TrimPrediction(None, "changing", "glibc", tuple(gdb.arena_mutexes(child.pid)), 1, 0.1,
                                     validate_when_stopped=True)
    # WHEN the trim runs
    result = trim.trim(identity, prediction=prediction, timeout=10, log=False)
    # THEN gdb attached, the stopped walk failed, and nothing was called
    assert result.status == "refused", result.message
    assert "could not be validated even with the process stopped" in result.message
    assert result.trim_returned is None and result.call_s is None
    assert any(note.startswith("attached to") for note in result.notes) and "detached" in result.notes
    assert_untouched(child)


def test_a_heap_validated_with_the_process_stopped_is_trimmed(children, gcc):
    # GIVEN the same request on a sound heap (64 MiB freed, pinned by one chunk)
    child = children.start([target_binary(), "64"])
    identity = identity_of(child.pid)
    sound = trim.predict(identity)
    assert sound.refusal is None and sound.release_bytes > 60 * 2**20
    from dataclasses import replace

    prediction = replace(sound, validate_when_stopped=True)
    result = trim.trim(identity, prediction=prediction, timeout=10, log=False)
    # THEN the stopped walk was valid and the trim went ahead
    assert result.ok, result.message
    assert any(note.startswith("heap walked with the process stopped: valid") for note in result.notes)
    assert result.heap_released_bytes > 60 * 2**20
    assert child.ask("ping") == "pong"


def test_a_zombie_is_refused_as_a_zombie(children, gcc, state_home):
    # GIVEN a zombie whose parent (a helper, not this test process) never reaps it
    helper = children.start([sys.executable, "-c", (
        "import os, sys\n"
        "pid = os.fork()\n"
        "if pid == 0:\n    os._exit(0)\n"
        "print('READY', pid, flush=True)\n"
        "sys.stdin.readline()\n")])
    zombie = int(helper.ready_line.split()[1])
    wait_until(lambda: state_of(zombie) == "Z")
    # WHEN memtop trim is run on it, THEN it is refused as a zombie, not as "not glibc"
    done = memtop_cli("trim", str(zombie), "--yes")
    assert done.returncode == 1
    assert "is a zombie" in done.stdout + done.stderr, done.stdout + done.stderr
    assert "glibc" not in done.stdout + done.stderr
    assert "is a zombie" in trim.predict(identity_of(zombie)).refusal


def test_a_kernel_thread_is_refused_as_a_kernel_thread():
    with open("/proc/2/stat") as f:
        assert f.read().startswith("2 (kthreadd)")
    done = memtop_cli("trim", "2", "--yes")
    assert done.returncode == 1
    assert "kernel thread" in done.stdout + done.stderr and "glibc" not in done.stdout + done.stderr


def test_trim_output_shows_a_hostile_library_name_escaped(children, gcc, tmp_path):
    # GIVEN a process with a preloaded "jemalloc" whose file name holds an OSC 52 (clipboard
    # write) sequence: any user can name a library so
    name = "libjemalloc\x1b]52;c;cHduZWQ=\x07.so"
    src = tmp_path / "empty.c"
    src.write_text("int memtop_test_symbol;\n")
    library = tmp_path / name
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(library), str(src)], check=True, capture_output=True)
    child = children.start([compile_c(NO_MALLOC, name="no_malloc")], env=dict(os.environ, LD_PRELOAD=str(library)))
    # WHEN root runs memtop trim on it
    done = memtop_cli("trim", str(child.pid), "--yes")
    # THEN it is refused (a "jemalloc" without jemalloc's calls), and the name reaches the
    # terminal only escaped
    assert done.returncode == 1
    assert "refused" in done.stdout and "exports no malloc" in done.stdout
    assert "\x1b" not in done.stdout + done.stderr and "\x07" not in done.stdout + done.stderr
    assert "libjemalloc\\e]52;c;cHduZWQ=\\a.so" in done.stdout


BAD_NAME = r"""
#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>
int main(void) {
    prctl(PR_SET_NAME, "bad\xff\xfe\x1b[2J");  /* not UTF-8, and an escape sequence */
    write(1, "READY\n", 6);
    raise(SIGSTOP);  /* stopped: trim refuses at once, without gdb */
    pause();
    return 0;
}
"""


def test_trim_json_is_valid_for_a_name_that_is_not_utf8(children, gcc):
    child = children.start([compile_c(BAD_NAME, name="bad_name")])
    wait_until(lambda: state_of(child.pid) == "T")
    done = memtop_cli("trim", str(child.pid), "--yes", "--json")
    assert done.returncode == 1
    assert "\\udc" not in done.stdout  # no lone surrogate: strict JSON parsers accept it
    result = json.loads(done.stdout)
    assert result["status"] == "refused" and "is stopped" in result["message"]
    # Whichever way the proc reader decodes it (U+FFFD today; bytes kept as surrogates would be
    # written as a list of bytes by json_safe), it is the process's name and valid JSON.
    assert result["comm"] == list(b"bad\xff\xfe\x1b[2J") or result["comm"].startswith("bad")
    done = memtop_cli("trim", str(child.pid), "--yes")
    assert "\x1b" not in done.stdout
