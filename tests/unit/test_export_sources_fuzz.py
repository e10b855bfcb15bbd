"""No kernel file's content stops the exporter's sampling: with any bytes in any file of a captured
proc tree (hypothesis), ExportSampler.sample() returns a sample (what could not be read is in its
errors) and the exposition renders as valid UTF-8 that Prometheus' parser reads."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from memtop.collect.export import ExportSampler
from memtop.output.prometheus import MemtopCollector

TREE = Path(__file__).resolve().parent.parent / "fixtures" / "export" / "proc"
# Not sys/kernel/{hostname,osrelease}: read once when the exporter starts, from memtop's own UTS
# namespace (only root sets them), not by the sampling.
FILES = sorted(str(p.relative_to(TREE)) for p in TREE.rglob("*")
               if p.is_file() and "/fd/" not in str(p) and "sys/kernel" not in str(p))


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fuzz") / "proc"
    shutil.copytree(TREE, root, symlinks=True)
    return root


def _mutations(original: bytes):
    return st.one_of(
        st.binary(max_size=400),  # anything
        st.tuples(st.integers(0, max(0, len(original) - 1)), st.binary(min_size=1, max_size=8)).map(
            lambda t: original[:t[0]] + t[1] + original[t[0] + len(t[1]):]),  # a few bytes changed
        st.integers(0, len(original)).map(lambda n: original[:n]),  # cut short
        st.sampled_from([b"", b"\xff\xfe\x00\n", b"-1\n", b"99999999999999999999999999\n", b"nan inf\n"]),
    )


@settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_content_of_any_kernel_file_gives_a_sample(tree, data):
    rel = data.draw(st.sampled_from(FILES), label="file")
    original = (TREE / rel).read_bytes()
    damaged = data.draw(_mutations(original), label="content")
    (tree / rel).write_bytes(damaged)
    try:
        sampler = ExportSampler(tree, top=5)
        try:
            sample = sampler.sample()
        finally:
            sampler.close()
        collector = MemtopCollector()
        collector.publish(sample)
        text = collector.exposition.text.decode("utf-8")
        list(text_string_to_metric_families(text))
    finally:
        (tree / rel).write_bytes(original)
