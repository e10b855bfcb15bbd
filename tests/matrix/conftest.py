"""The kernel and glibc matrix (issue 17) runs only when asked: MEMTOP_MATRIX=1 (`make test-matrix`,
or `MEMTOP_MATRIX=1 make test` for the normal suite and the matrix). Asked, a missing tool or a
failed boot is a failure with the reason, never a skip."""

import os

import pytest

ASKED = os.environ.get("MEMTOP_MATRIX") == "1"


def pytest_collection_modifyitems(config, items):
    if ASKED:
        return
    skip = pytest.mark.skip(reason="the kernel and glibc matrix runs with MEMTOP_MATRIX=1 (make test-matrix)")
    here = os.path.dirname(__file__)
    for item in items:
        if str(item.fspath).startswith(here):
            item.add_marker(skip)


def pytest_terminal_summary(terminalreporter):
    """What the matrix measured, one line per configuration (for the README's table)."""
    if not ASKED:
        return
    from tests.matrix.matrix_support import RESULTS

    if RESULTS:
        terminalreporter.section("kernel and glibc matrix")
        for record in RESULTS:
            terminalreporter.write_line(" ".join(f"{k}={v}" for k, v in record.items()))
