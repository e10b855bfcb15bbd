import shutil

import pytest

from tests.support import Child


@pytest.fixture
def children():
    """Start children with ``children.start(argv, ...)``; all are killed at teardown, even on failure."""

    class _Children(list):
        def start(self, argv, **kw) -> Child:
            child = Child(argv, **kw)
            self.append(child)
            return child

    started = _Children()
    yield started
    for child in started:
        child.close()


@pytest.fixture(scope="session")
def gcc():
    if shutil.which("gcc") is None:
        pytest.fail("gcc is missing: run `make test`, which installs it as root")
    return shutil.which("gcc")
