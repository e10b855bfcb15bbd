"""The thrashing finding, from rates computed by the real vmstat parser on made-up counters."""

from __future__ import annotations

from memtop.collect.pagecache import VmstatSampler, thrashing_finding
from memtop.model.findings import Severity
from memtop.model.pagecache import CachedFile, FileCacheStat
from memtop.procfs.vmstat import vmstat_rates

PAGE = 4096


def rates(refault_pages_per_s: float, pgpgin_kib_per_s: float):
    before = {"pgpgin": 0, "workingset_refault_file": 0}
    after = {"pgpgin": int(pgpgin_kib_per_s * 2), "workingset_refault_file": int(refault_pages_per_s * 2)}
    return vmstat_rates(before, after, 2.0, time=0.0)


def reread(path: str, evicted: int) -> CachedFile:
    return CachedFile(FileCacheStat(path, 1 << 30, 1 << 20, 0, 0, evicted, evicted, "cachestat"), (42,))


def test_no_finding_when_quiet_or_when_refaults_are_a_small_share():
    assert thrashing_finding([rates(10, 1000)], page_size=PAGE) is None  # 40 KiB/s of refaults
    # 8 MiB/s of refaults, but 10% of 80 MiB/s read: a big sequential reader, not thrashing
    assert thrashing_finding([rates(2048, 81920)], page_size=PAGE) is None
    assert thrashing_finding([], page_size=PAGE) is None


def test_finding_names_the_reread_files():
    window = [rates(2560, 12000)] * 5  # 10 MiB/s refaulted out of ~11.7 MiB/s read
    files = [reread("/data/big.log", 300 << 20), reread("/data/other", 0), reread("/data/idx", 10 << 20)]
    finding = thrashing_finding(window, files, page_size=PAGE)
    assert finding.severity is Severity.CRITICAL
    assert "10.0 MiB/s" in finding.text and "85% of all disk reads" in finding.text
    assert finding.text.index("/data/big.log") < finding.text.index("/data/idx")
    assert "/data/other" not in finding.text
    assert finding.next_step
    # 310 MiB recently evicted against ~100 MiB refaulted in the window: they explain it
    assert "other files" not in finding.text


def test_files_that_explain_little_of_the_refaults_say_so():
    window = [rates(2560, 12000)] * 5  # ~100 MiB refaulted over the 10 s
    finding = thrashing_finding(window, [reread("/usr/lib/libpython.so", 16 << 10)], page_size=PAGE)
    assert "/usr/lib/libpython.so (16.0 KiB recently evicted)" in finding.text
    assert "The files listed hold 16.0 KiB recently evicted of ~100 MiB refaulted" in finding.text
    assert "most of what is re-read is in other files" in finding.text
    assert "The files listed hold 0 B" in thrashing_finding(window, [], page_size=PAGE).text


def test_warning_when_refaults_are_a_third_of_reads():
    finding = thrashing_finding([rates(1024, 12000)], page_size=PAGE)
    assert finding.severity is Severity.WARNING


def test_sampler_rates_from_two_reads_of_a_captured_tree(tmp_path):
    (tmp_path / "vmstat").write_text("pgpgin 100\npgpgout 0\nworkingset_refault_file 10\n")
    sampler = VmstatSampler(tmp_path)
    assert sampler.sample(now=1.0) is None
    (tmp_path / "vmstat").write_text("pgpgin 300\npgpgout 0\nworkingset_refault_file 50\n")
    r = sampler.sample(now=3.0)
    assert r.get("pgpgin") == 100.0 and r.get("workingset_refault_file") == 20.0
    assert sampler.series("pgpgin") == [100.0]
