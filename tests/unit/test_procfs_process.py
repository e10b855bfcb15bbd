"""Parsers of per-process files, on text captured from this machine (tests/fixtures/proc-basic)
and on edge cases: comm with spaces and parentheses, kernel threads, zombies, older kernels."""

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.support import IS_ROOT, run_as_user
from memtop.procfs import AccessDenied, NoSuchProcess, ParseError
from memtop.procfs.process import (
    fd_count_is_stat_size,
    parse_smaps_file,
    parse_smaps_rollup_file,
    parse_stat_file,
    parse_status_file,
    read_cmdline,
    read_fd_count,
    read_rollup,
    read_stat,
)

FIX = Path(__file__).resolve().parent.parent / "fixtures" / "proc-basic"
USER_PID, ZOMBIE_PID, KTHREAD_PID, SHELL_PID = 7335, 7337, 2, 1077


def test_stat_with_parenthesis_in_comm():
    # GIVEN a process named "a) b" (captured), WHEN its stat is parsed, THEN comm ends at the last ')'
    stat = read_stat(USER_PID, FIX)
    assert stat.comm == "a) b"
    assert stat.pid == USER_PID and stat.ppid == 1 and stat.state == "S"
    assert stat.num_threads == 1
    assert not stat.is_kernel_thread and not stat.is_zombie


def test_stat_comm_with_spaces_and_both_parens():
    data = b"42 (x (y) ) z) R 1 42 42 0 -1 4194304 7 0 3 0 1 2 0 0 20 0 5 0 999 1000 10 18446744073709551615\n"
    stat = parse_stat_file(data)
    assert stat.comm == "x (y) ) z"
    assert (stat.minflt, stat.majflt, stat.num_threads, stat.start_ticks, stat.rss_pages) == (7, 3, 5, 999, 10)


def test_zombie_and_kernel_thread_flags():
    zombie = read_stat(ZOMBIE_PID, FIX)
    assert zombie.is_zombie and zombie.comm == "a) b"
    kthread = read_stat(KTHREAD_PID, FIX)
    assert kthread.is_kernel_thread and kthread.comm == "kthreadd"


def test_status_of_user_process_matches_captured_lines():
    status = parse_status_file((FIX / str(USER_PID) / "status").read_bytes())
    assert status.uid == 0
    assert status.rss == 1400 * 1024
    assert (status.rss_anon, status.rss_file, status.rss_shmem) == (100 * 1024, 1300 * 1024, 0)
    assert status.rss_anon + status.rss_file + status.rss_shmem == status.rss
    assert status.threads == 1


def test_status_of_zombie_and_kernel_thread_has_no_memory_lines():
    for pid in (ZOMBIE_PID, KTHREAD_PID):
        status = parse_status_file((FIX / str(pid) / "status").read_bytes())
        assert status.rss is None and status.rss_anon is None and status.swap is None
        assert status.uid == 0


def test_status_without_rss_split_lines_as_on_old_kernels():
    # RssAnon/RssFile/RssShmem appeared in Linux 4.5: older kernels have only VmRSS.
    status = parse_status_file(b"Name:\tx\nUid:\t1000\t1000\t1000\t1000\nVmRSS:\t  2048 kB\nThreads:\t3\n")
    assert status.rss == 2048 * 1024 and status.rss_anon is None and status.threads == 3 and status.uid == 1000


def test_status_garbage_value_is_a_parse_error():
    with pytest.raises(ParseError):
        parse_status_file(b"VmRSS:\tlots kB\n")


def test_smaps_rollup_captured():
    rollup = parse_smaps_rollup_file((FIX / str(USER_PID) / "smaps_rollup").read_text())
    assert rollup.rss == 1400 * 1024 and rollup.pss == 233 * 1024
    assert rollup.uss == (0 + 112) * 1024
    assert rollup.lazyfree == 0 and rollup.swap_pss == 0 and rollup.source == "smaps_rollup"


def test_smaps_sum_equals_rollup_for_the_same_process():
    # The fallback (sum of smaps) agrees with smaps_rollup on the fields memtop shows.
    rollup = parse_smaps_rollup_file((FIX / str(SHELL_PID) / "smaps_rollup").read_text())
    summed = parse_smaps_file((FIX / str(SHELL_PID) / "smaps").read_text())
    assert summed.source == "smaps"
    for field in ("rss", "private_clean", "private_dirty", "anonymous", "swap", "shared_clean"):
        assert getattr(summed, field) == getattr(rollup, field), field
    # smaps prints each mapping's Pss truncated to whole kB: the sum may lose < 1 kB per mapping.
    mappings = (FIX / str(SHELL_PID) / "smaps").read_text().count("\nRss:")
    assert 0 <= rollup.pss - summed.pss < mappings * 1024


def test_rollup_missing_fields_on_older_kernels_are_unknown():
    text = "00400000-7fff0000 ---p 00000000 00:00 0 [rollup]\nRss: 100 kB\nPss: 50 kB\nPrivate_Clean: 4 kB\nPrivate_Dirty: 8 kB\n"
    rollup = parse_smaps_rollup_file(text)
    assert rollup.lazyfree is None and rollup.swap_pss is None  # not 0: unknown
    assert rollup.uss == 12 * 1024


def test_empty_rollup_is_none_and_garbage_is_an_error():
    assert parse_smaps_rollup_file("") is None
    with pytest.raises(ParseError):
        parse_smaps_rollup_file("Pss: 12 kB\n")


def test_read_rollup_of_a_vanished_process(tmp_path):
    with pytest.raises(NoSuchProcess):
        read_rollup(424242, tmp_path)


def test_cmdline_nuls_and_fd_listing():
    assert read_cmdline(USER_PID, FIX).endswith("a) b")
    assert read_cmdline(KTHREAD_PID, FIX) == ""
    assert read_fd_count(SHELL_PID, FIX, stat_size=False) == 9


def test_fd_count_by_stat_size_needs_62():
    assert fd_count_is_stat_size("6.18.44-fc-v782")
    assert fd_count_is_stat_size("6.2.0")
    assert not fd_count_is_stat_size("6.1.90")
    assert not fd_count_is_stat_size("5.10.0-28-amd64")
    assert not fd_count_is_stat_size("weird")


@pytest.mark.skipif(not IS_ROOT, reason="needs root to drop privileges in a child")
def test_fd_count_denied_for_another_users_process():
    """A non-root reader gets AccessDenied for root's fds, never a silent number."""

    def count_pid1():
        try:
            return ("count", read_fd_count(1))
        except AccessDenied as e:
            return ("denied", e.reason)

    kind, detail = run_as_user(65534, count_pid1)
    assert kind == "denied" and "needs root" in detail


@given(st.binary(max_size=300))
def test_stat_parser_never_crashes_on_garbage(data):
    try:
        parse_stat_file(data)
    except ParseError:
        pass


@given(st.binary(max_size=300))
def test_status_parser_never_crashes_on_garbage(data):
    try:
        parse_status_file(data)
    except ParseError:
        pass


@given(st.text(max_size=300))
def test_rollup_parser_never_crashes_on_garbage(text):
    try:
        parse_smaps_rollup_file(text)
    except ParseError:
        pass


def test_access_denied_reason_names_the_file():
    err = AccessDenied("/proc/1/smaps_rollup")
    assert "/proc/1/smaps_rollup" in err.reason
