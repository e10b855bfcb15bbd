"""`memtop help TOPIC` prints what the TUI's help screens say (issue 19, item 6), and
`memtop completion bash|zsh` completes memtop's subcommands, options and their values."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from memtop.commands.help import TAB_IDS
from memtop.tui.app import GLOBAL_KEYS, tab_classes

TABS = tab_classes()

ROOT = Path(__file__).resolve().parents[2]


def memtop(*args: str, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "memtop", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=60, stdin=subprocess.DEVNULL, env={**os.environ, "COLUMNS": "200", **(env or {})})


def flat(text: str) -> str:
    """The text with its wrapping undone (a source may be folded over lines)."""
    return " ".join(text.split())


def test_help_topics_are_the_tabs_in_order():
    assert list(TAB_IDS) == [tab.TAB_ID for tab in TABS]


@pytest.mark.parametrize("number, tab", list(enumerate(TABS, 1)), ids=[t.TAB_ID for t in TABS])
def test_help_of_a_tab_names_every_figure_and_its_source(number, tab):
    for topic in (tab.TAB_ID, str(number)):
        done = memtop("help", topic)
        assert done.returncode == 0 and done.stderr == ""
        text = flat(done.stdout)
        assert text.startswith(f"{tab.TAB_TITLE} tab (key {number}) {flat(tab.TAB_ABOUT)}") and tab.TAB_ABOUT
        for figure, source in tab.FIGURE_SOURCES:
            assert flat(f"{figure} {source}") in text, figure
        for key, what in tab.TAB_KEYS:
            assert flat(f"{key} {what}") in text, key


def test_help_keys_overview_exit_and_all():
    keys = flat(memtop("help", "keys").stdout)
    for key, what in GLOBAL_KEYS:
        assert flat(f"{key} {what}") in keys
    overview = memtop("help")
    assert overview.returncode == 0 and all(tab.TAB_ID in overview.stdout for tab in TABS)
    assert "2 usage error" in flat(memtop("help", "exit").stdout)
    everything = flat(memtop("help", "all").stdout)
    assert all(f"{tab.TAB_TITLE} tab" in everything for tab in TABS)
    bad = memtop("help", "bogus")
    assert bad.returncode == 2 and "no help topic 'bogus'" in bad.stderr


def complete_bash(script: str, *words: str) -> list[str]:
    """COMPREPLY for the command line ``words`` (the last one being completed)."""
    quoted = " ".join(f"'{w}'" for w in words)
    program = textwrap.dedent(f"""\
        {script}
        COMP_WORDS=({quoted}); COMP_CWORD={len(words) - 1}
        _memtop
        printf '%s\\n' "${{COMPREPLY[@]}}"
        """)
    done = subprocess.run(["bash", "--norc", "--noprofile"], input=program, capture_output=True, text=True,
                          timeout=30, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    return [line for line in done.stdout.splitlines() if line]


def test_bash_completion(tmp_path):
    script = memtop("completion", "bash").stdout
    assert complete_bash(script, "memtop", "ca") == ["cache"]
    assert set(complete_bash(script, "memtop", "")) >= {"snapshot", "explain", "help", "completion", "--version"}
    assert complete_bash(script, "memtop", "cache", "--so") == ["--sort"]
    assert complete_bash(script, "memtop", "cache", "--sort", "") == ["path", "cached", "size", "evicted"]
    assert complete_bash(script, "memtop", "drop-caches", "") == ["1", "2", "3"]
    assert str(os.getpid()) in complete_bash(script, "memtop", "explain", "")  # PIDs of running processes
    assert str(os.getpid()) in complete_bash(script, "memtop", "--pid", "")
    assert complete_bash(script, "memtop", "help", "pa") == ["pagecache"]
    (tmp_path / "rec.db").write_bytes(b"")
    assert complete_bash(script, "memtop", "replay", str(tmp_path / "re")) == [str(tmp_path / "rec.db")]
    assert "--inject-events-fd" not in script and "--proc" not in script  # hidden options stay hidden
    # the script's words are memtop's own: every subcommand's options are offered
    assert set(complete_bash(script, "memtop", "trim", "-")) == {"-h", "--help", "--yes", "-y", "--timeout",
                                                                  "--follow", "--json"}


def test_zsh_completion_loads_and_registers():
    if shutil.which("zsh") is None:
        pytest.skip("zsh is not installed (make test installs it as root)")
    script = memtop("completion", "zsh").stdout
    assert script.startswith("#compdef memtop")
    done = subprocess.run(["zsh", "-f", "-c", "autoload -U compinit && compinit -u; eval \"$(cat)\"; "
                           "print -r -- ${_comps[memtop]}"], input=script, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0 and "_memtop" in done.stdout, (done.stdout, done.stderr)
