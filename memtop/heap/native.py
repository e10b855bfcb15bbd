"""An optional native inner loop for the chunk walk, compiled with gcc on first use.

The pure-Python loop (memtop.heap.walk) is always there and is what runs when gcc is missing,
the build fails, or MEMTOP_PURE_PYTHON=1 is set. The C loop does exactly what the Python loop
does, for one window: follow chunk sizes, note each chunk whose successor has PREV_INUSE clear,
note the stops it lands on, and stop at a zero size. It is built into
``$XDG_CACHE_HOME/memtop`` (``~/.cache/memtop``), keyed by a hash of the source, with the
same gcc that `make test` installs; it is loaded with ctypes (no Python headers needed).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import subprocess
import tempfile
import threading
from pathlib import Path

SOURCE = r"""
#include <stdint.h>

typedef struct {
    int64_t i, prev, n, nfree, ntc, status;
} walk_state;

enum { DONE = 0, FULL = 1, ZERO = 2 };

/* Walk chunk headers in w[] (64-bit words) from word index st->i while it is below lim. */
/* A chunk is a tcache candidate when it is a stop (from the tcache lists) or when its second
 * user word (w[i + 3]) holds one of the keys (malloc.c tcache_put sets e->key). */
int memtop_walk(const uint64_t *w, int64_t lim, const int64_t *stops, int64_t nstops, int64_t *si_io,
                const uint64_t *keys, int64_t nkeys,
                int64_t *free_out, int64_t free_cap, int64_t *tc_out, int64_t tc_cap, walk_state *st)
{
    int64_t i = st->i, prev = st->prev, n = st->n, nfree = st->nfree, ntc = st->ntc, si = *si_io;
    int status = DONE;
    while (i < lim) {
        /* Room for one more of each before touching this chunk: FULL leaves the state exact. */
        if (ntc >= tc_cap || nfree + 2 > free_cap) { status = FULL; break; }
        while (si < nstops && stops[si] < i)
            si++;
        int hit = 0;
        if (si < nstops && stops[si] == i) {
            hit = 1;
            while (si < nstops && stops[si] == i)
                si++;
        }
        for (int64_t k = 0; k < nkeys && !hit; k++)
            hit = w[i + 3] == keys[k];
        if (hit)
            tc_out[ntc++] = i;
        uint64_t s = w[i + 1];
        if (!(s & 1)) {
            free_out[nfree++] = prev;
            free_out[nfree++] = i;
        }
        prev = i;
        n++;
        uint64_t step = s >> 3;
        if (step == 0) { status = ZERO; break; }
        i += (int64_t)step;
    }
    st->i = i; st->prev = prev; st->n = n; st->nfree = nfree; st->ntc = ntc; *si_io = si;
    st->status = status;
    return status;
}
"""

DONE, FULL, ZERO = 0, 1, 2


class WalkState(ctypes.Structure):
    _fields_ = [(name, ctypes.c_int64) for name in ("i", "prev", "n", "nfree", "ntc", "status")]


_lock = threading.Lock()
_lib = None
_tried = False
enabled = os.environ.get("MEMTOP_PURE_PYTHON", "") not in ("1", "yes", "true")
build_error: str | None = None if enabled else "disabled by MEMTOP_PURE_PYTHON"


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "memtop"


def load():
    """The compiled walker (a ctypes function), or None when it cannot be had."""
    global _lib, _tried, build_error
    if not enabled:
        return None
    with _lock:
        if _tried:
            return _lib
        _tried = True
        digest = hashlib.sha256(SOURCE.encode()).hexdigest()[:16]
        target = _cache_dir() / f"walk-{digest}.so"
        try:
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
                    src = Path(tmp) / "walk.c"
                    src.write_text(SOURCE)
                    out = Path(tmp) / "walk.so"
                    subprocess.run(["gcc", "-O2", "-shared", "-fPIC", "-o", str(out), str(src)],
                                   check=True, capture_output=True, timeout=60)
                    os.replace(out, target)  # atomic: a concurrent build never loads half a file
            lib = ctypes.CDLL(str(target))
            fn = lib.memtop_walk
            fn.restype = ctypes.c_int
            fn.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p, ctypes.c_int64,
                           ctypes.POINTER(ctypes.c_int64), ctypes.c_void_p, ctypes.c_int64,
                           ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p,
                           ctypes.c_int64, ctypes.POINTER(WalkState)]
            _lib = fn
        except (OSError, subprocess.SubprocessError) as e:
            build_error = f"native walk unavailable ({e}); using the pure-Python walk"
            _lib = None
        return _lib
