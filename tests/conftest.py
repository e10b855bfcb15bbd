import shutil

import pytest

from tests.support import Child


@pytest.fixture(autouse=True)
def _private_state_home(tmp_path_factory, monkeypatch):
    """Every test (and every child it starts, which inherits the environment) writes the audit log
    (memtop.actions.audit: $XDG_STATE_HOME/memtop/actions.log) to a temporary directory, never to
    the user's real ~/.local/state. Tests that look at the log set their own XDG_STATE_HOME."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path_factory.mktemp("state")))


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
