"""The optional native inner loop of the chunk walk: the extension module memtop.heap._walk.

It is built when memtop is installed (setup.py declares it ``optional``: without a C compiler or
Python headers the install goes on and only the pure-Python loop exists). It is imported like
any module of the package, from the package's own directory; nothing is compiled or loaded from
a cache or any other directory at run time (issue 15: a loader that built into
``$XDG_CACHE_HOME/memtop`` let whoever could write there run code as root).

The pure-Python loop (memtop.heap.walk) is always there and is what runs when the module is
missing or MEMTOP_PURE_PYTHON=1 is set; both give the same walk (tests/unit/test_heap_walk_logic.py).
"""

from __future__ import annotations

import os

DONE, ZERO = 0, 2

enabled = os.environ.get("MEMTOP_PURE_PYTHON", "") not in ("1", "yes", "true")
build_error: str | None = None if enabled else "disabled by MEMTOP_PURE_PYTHON"
_walk_window = _follow_fastbins = _merge_runs = None

if enabled:
    try:
        from memtop.heap._walk import follow_fastbins as _follow_fastbins
        from memtop.heap._walk import merge_runs as _merge_runs
        from memtop.heap._walk import walk_window as _walk_window
    except ImportError as e:
        build_error = (f"the native walk was not built at install time ({e}); using the pure-Python walk "
                       "(install a C compiler and the Python headers, then reinstall memtop)")


def load():
    """The native ``walk_window`` function, or None when the module is not there (or disabled)."""
    return _walk_window if enabled else None


def follow_fastbins():
    """The native ``follow_fastbins`` (fastbin lists through the candidates the walk noted), or None."""
    return _follow_fastbins if enabled else None


def merge_runs():
    """The native ``merge_runs`` (free and fastbin chunks into runs, packed), or None."""
    return _merge_runs if enabled else None


def origin() -> str | None:
    """The file the native loop was loaded from (inside the installed package), or None."""
    if load() is None:
        return None
    from memtop.heap import _walk

    return _walk.__file__
