"""A sampler that dies or stops delivering makes /metrics answer 503 with the reason (and says it
on stderr), never a frozen sample. The exporter runs in-process on a real socket, with the real
ExportSampler behind a fault injector: the faults cannot be made to happen from outside any more
(every source failure is caught per source: tests/unit/test_export_sources_fuzz.py)."""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request

import pytest

from memtop.collect.export import ExportSampler
from memtop.commands.export import Exporter
from tests.support import wait_until


class Broken(BaseException):
    """What no `except Exception` catches: the thread ends."""


class FaultySampler:
    """The real sampler for the first ``good`` samples, then ``fault()``."""

    def __init__(self, good: int, fault):
        self.real = ExportSampler(top=5)
        self.good = good
        self.fault = fault
        self.calls = 0

    def sample(self):
        self.calls += 1
        if self.calls > self.good:
            self.fault()
        return self.real.sample()

    def close(self):
        self.real.close()


def scrape(exporter: Exporter) -> tuple[int, str]:
    host, port = exporter.address
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


@pytest.fixture
def running():
    started: list[Exporter] = []

    def start(sampler, **kw) -> Exporter:
        exporter = Exporter(sampler, "127.0.0.1", 0, 0.5, **kw)
        started.append(exporter)
        exporter.start()
        return exporter

    yield start
    for exporter in started:
        exporter.stop()


def test_a_dead_sampling_thread_makes_metrics_answer_503_with_the_reason(running, capsys):
    def die():
        raise Broken("the sampler broke")

    exporter = running(FaultySampler(2, die))
    assert scrape(exporter)[0] == 200
    # WHEN the sampling thread ends
    status, body = wait_until(lambda: (r := scrape(exporter))[0] == 503 and r, timeout=10)
    # THEN scrapes fail with the reason, and stderr said it once
    assert "the sampling thread stopped: Broken: the sampler broke" in body
    err = capsys.readouterr().err
    assert err.count("the sampling thread stopped (Broken: the sampler broke)") == 1
    assert not exporter.threads[0].is_alive() and exporter.http_alive


def test_a_stuck_sampler_makes_metrics_answer_503_once_its_sample_is_stale(running):
    release = threading.Event()
    exporter = running(FaultySampler(2, lambda: release.wait(60)), stale_after=2.0)
    try:
        assert scrape(exporter)[0] == 200
        t0 = time.monotonic()
        status, body = wait_until(lambda: (r := scrape(exporter))[0] == 503 and r, timeout=15)
        assert "no new sample for" in body and "a read may be stuck" in body
        assert time.monotonic() - t0 >= 1.0
    finally:
        release.set()  # the stuck sample returns: samples go on
    wait_until(lambda: scrape(exporter)[0] == 200, timeout=15)


def test_a_sampler_that_keeps_failing_serves_the_previous_sample_then_503(running, capsys):
    def fail():
        raise OSError(5, "Input/output error")

    exporter = running(FaultySampler(1, fail), stale_after=2.0)
    status, body = scrape(exporter)
    assert status == 200 and "memtop_exporter_samples_total 1.0" in body
    status, body = wait_until(lambda: (r := scrape(exporter))[0] == 503 and r, timeout=15)
    assert "last error: sampling failed (OSError: [Errno 5] Input/output error)" in body
    err = capsys.readouterr().err
    assert err.count("sampling failed (OSError: [Errno 5] Input/output error); serving the previous sample") == 1
