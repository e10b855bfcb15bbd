"""Evict acts only on the file that was checked (issue 15, item 4), on real files and links.

A user who owns a directory can replace a file in it between memtop's check and its act: by a
symbolic link to another file (root would evict that file and log the first name), by another
file, a FIFO, or a directory on the path by a link. Each case here does the swap for real
between `memtop evict`'s two steps (check_paths, then evict_checked: what the command runs)
and checks that the other file keeps its pages, and that the refusal is said and logged.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from memtop import cli
from memtop.actions import evict as evict_module
from memtop.actions.evict import check_paths, evict_checked
from memtop.procfs.cachestat import file_cache_stat
from tests.pagecache_support import write_file

pytestmark = pytest.mark.live

MIB = 2**20


@pytest.fixture(autouse=True)
def state_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    return tmp_path / "state"


def cached(path: Path, size: int = 2 * MIB) -> Path:
    write_file(path, size)
    path.read_bytes()
    assert file_cache_stat(path).cached_bytes >= size
    return path


def audit(state_home: Path) -> list[dict]:
    return [json.loads(line) for line in (state_home / "memtop" / "actions.log").read_text().splitlines()]


def replace_by_link(path: Path, target: Path) -> None:
    tmp = path.with_name(path.name + ".link")
    tmp.symlink_to(target)
    os.rename(tmp, path)  # atomic, as an attacker would do it


def test_a_file_replaced_by_a_link_after_the_check_is_refused(tmp_path, state_home):
    # GIVEN a file checked for eviction, and another cached file (the victim)
    shown = cached(tmp_path / "shown")
    victim = cached(tmp_path / "victim")
    (target,) = check_paths([shown])
    # WHEN the file is replaced by a link to the victim before the act
    replace_by_link(shown, victim)
    outcome = evict_checked([target], named=[shown])
    # THEN nothing is done, the victim keeps its pages, and the refusal says why
    (result,) = outcome.results
    assert not result.ok and result.refused and result.outcome == "refused"
    assert "changed since it was checked" in result.error and "symbolic link" in result.error
    assert file_cache_stat(victim).cached_bytes >= 2 * MIB
    # AND the audit log has it as refused, under the name checked, with the pinned inode
    (line,) = audit(state_home)
    assert line["result"]["refused"] == 1 and line["result"]["dropped_bytes"] == 0
    (entry,) = line["result"]["per_file"]
    assert entry["path"] == str(shown) and entry["outcome"] == "refused" and entry["inode"] == target.pinned.inode


def test_a_file_replaced_by_another_file_is_refused(tmp_path):
    shown = cached(tmp_path / "shown")
    other = cached(tmp_path / "other")
    (target,) = check_paths([shown])
    os.rename(other, shown)  # the other file now has the name that was checked
    (result,) = evict_checked([target], log=False).results
    assert result.refused and "replaced by another file" in result.error
    assert file_cache_stat(shown).cached_bytes >= 2 * MIB  # the other file's pages stay


def test_a_file_modified_after_the_check_is_refused(tmp_path):
    shown = cached(tmp_path / "shown")
    (target,) = check_paths([shown])
    with open(shown, "ab") as f:
        f.write(b"more")
    (result,) = evict_checked([target], log=False).results
    assert result.refused and "modified" in result.error


def test_a_fifo_put_in_its_place_is_refused_without_blocking(tmp_path):
    shown = cached(tmp_path / "shown")
    (target,) = check_paths([shown])
    shown.unlink()
    os.mkfifo(shown)
    (result,) = evict_checked([target], log=False).results  # an open of the FIFO would block
    assert result.refused and "FIFO" in result.error


def test_a_directory_on_the_path_replaced_by_a_link_is_refused(tmp_path):
    # GIVEN a tree checked with -r, and a victim file with the same name in another directory
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    cached(tree / "sub" / "f")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    victim = cached(elsewhere / "f")
    targets = check_paths([tree], recursive=True)
    assert [t.path for t in targets] == [str(tree / "sub" / "f")]
    # WHEN tree/sub becomes a link to the victim's directory
    os.rename(tree / "sub", tree / "sub.old")
    (tree / "sub").symlink_to(elsewhere)
    (result,) = evict_checked(targets, log=False).results
    # THEN the victim is untouched
    assert result.refused and "a directory on its path (sub)" in result.error
    assert file_cache_stat(victim).cached_bytes >= 2 * MIB


def test_a_link_named_by_the_user_is_followed_once_and_pinned(tmp_path):
    real = cached(tmp_path / "real")
    link = tmp_path / "link"
    link.symlink_to(real)
    (target,) = check_paths([link])
    assert target.resolved == str(real) and target.via_link
    (result,) = evict_checked([target], log=False).results
    assert result.ok and result.after.cached_bytes == 0 and result.path == str(link)


def test_memtop_evict_refuses_a_file_swapped_between_its_check_and_its_act(tmp_path, state_home, monkeypatch,
                                                                           capsys):
    # GIVEN `memtop evict FILE`, with the swap done between the command's check and its act
    shown = cached(tmp_path / "shown")
    victim = cached(tmp_path / "victim")
    real_act = evict_module.evict_checked

    def swap_then_act(targets, **kw):
        replace_by_link(shown, victim)
        return real_act(targets, **kw)

    monkeypatch.setattr(evict_module, "evict_checked", swap_then_act)
    # WHEN the command runs
    status = cli.main(["evict", str(shown)])
    # THEN it exits 1 with one clear line, and the victim keeps its pages
    out = capsys.readouterr().out.splitlines()
    assert status == 1
    assert out[0] == (f"{shown}: not evicted: the file changed since it was checked (it was replaced by a symbolic "
                      "link): nothing done")
    assert "1 refused (changed since checked)" in out[1]
    assert file_cache_stat(victim).cached_bytes >= 2 * MIB
    (line,) = audit(state_home)
    assert line["target"]["paths"] == [str(shown)] and line["result"]["refused"] == 1


def test_memtop_evict_shows_a_hostile_file_name_escaped(tmp_path, capsys):
    name = "x\x1b]0;PWNED\x07\n[bold]y"
    path = cached(tmp_path / name)
    status = cli.main(["evict", str(path)])
    out = capsys.readouterr().out
    assert status == 0
    assert "\x1b" not in out and "\x07" not in out
    assert out.splitlines()[0].startswith(f"{tmp_path}/x\\e]0;PWNED\\a\\n[bold]y: cached 2.00 MiB -> 0 B")
