"""C targets for the allocator tests: one program, compiled against jemalloc, tcmalloc, mimalloc,
musl (dynamic and static) or static glibc, that allocates in a known pattern and reports the
allocator's own figures as the independent truth.

`alloc_target SCENARIO` prints READY, then answers one line per command on stdin:
- `stats`: the allocator's own report, `STATS key=value ...` (jemalloc mallctl, tcmalloc
  MallocExtension properties, mimalloc mi_process_info, and for every allocator the sum of the
  usable sizes of the blocks the program holds, `live`, and their count, `count`);
- `info` (static glibc): malloc_info(0, stdout) between `<malloc` and `</malloc>`;
- `quit`.
stdio uses static buffers: nothing is allocated after READY unless a command says so.
Scenarios: `mixed` (small blocks of many sizes, half freed; large blocks, a third freed), `freed`
(the same, then almost everything freed: a pool the allocator keeps), `allfree` (everything freed).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.support import compile_c

LIBDIR = Path("/usr/lib/x86_64-linux-gnu")
LIBRARIES = {
    "jemalloc": LIBDIR / "libjemalloc.so.2",
    "tcmalloc": LIBDIR / "libtcmalloc.so.4",
    "mimalloc": LIBDIR / "libmimalloc.so.2",
}

ALLOC_TARGET = r"""
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#if defined(JEMALLOC)
int mallctl(const char *, void *, size_t *, void *, size_t);
size_t malloc_usable_size(void *);
#elif defined(TCMALLOC)
int MallocExtension_GetNumericProperty(const char *, size_t *);
size_t tc_malloc_size(void *);
#define malloc_usable_size tc_malloc_size
#elif defined(MIMALLOC)
#include <stdbool.h>
void mi_process_info(size_t *, size_t *, size_t *, size_t *, size_t *, size_t *, size_t *, size_t *);
size_t mi_usable_size(const void *);
#define malloc_usable_size mi_usable_size
#else
#include <malloc.h>
#endif

#define N 120000
#define BIG 60
static void *small[N];
static void *big[BIG];
static char inbuf[256], outbuf[1 << 16];

static void fill(int keep_every) {
    for (int i = 0; i < N; i++) { small[i] = malloc(24 + (i % 37) * 29); memset(small[i], 1, 24); }
    for (int i = 0; i < BIG; i++) { big[i] = malloc(200000 + (i % 4) * 1500000); memset(big[i], 2, 150000); }
    for (int i = 0; i < N; i++) if (i % keep_every) { free(small[i]); small[i] = 0; }
    for (int i = 0; i < BIG; i++) if (i % 3 == 0 || keep_every > 2) { free(big[i]); big[i] = 0; }
}

static void live(size_t *bytes, size_t *count) {
    *bytes = 0; *count = 0;
    for (int i = 0; i < N; i++) if (small[i]) { *bytes += malloc_usable_size(small[i]); (*count)++; }
    for (int i = 0; i < BIG; i++) if (big[i]) { *bytes += malloc_usable_size(big[i]); (*count)++; }
}

#if defined(JEMALLOC)
static size_t ctl(const char *name) { size_t v = 0, sz = sizeof v; return mallctl(name, &v, &sz, NULL, 0) ? (size_t)-1 : v; }
static void stats(void) {
    uint64_t e = 1; size_t sz = sizeof e; mallctl("epoch", &e, &sz, &e, sz);
    printf("STATS allocated=%zu active=%zu retained=%zu resident=%zu pdirty=%zu pmuzzy=%zu",
           ctl("stats.allocated"), ctl("stats.active"), ctl("stats.retained"), ctl("stats.resident"),
           ctl("stats.arenas.4096.pdirty") * 4096, ctl("stats.arenas.4096.pmuzzy") * 4096);
}
#elif defined(TCMALLOC)
static size_t prop(const char *n) { size_t v = 0; return MallocExtension_GetNumericProperty(n, &v) ? v : (size_t)-1; }
static void stats(void) {
    printf("STATS allocated=%zu heap=%zu pageheap_free=%zu pageheap_unmapped=%zu central=%zu transfer=%zu thread=%zu",
           prop("generic.current_allocated_bytes"), prop("generic.heap_size"), prop("tcmalloc.pageheap_free_bytes"),
           prop("tcmalloc.pageheap_unmapped_bytes"), prop("tcmalloc.central_cache_free_bytes"),
           prop("tcmalloc.transfer_cache_free_bytes"), prop("tcmalloc.thread_cache_free_bytes"));
}
#elif defined(MIMALLOC)
static void stats(void) {
    size_t a[8];
    mi_process_info(a, a + 1, a + 2, a + 3, a + 4, a + 5, a + 6, a + 7);
    printf("STATS commit=%zu", a[5]);
}
#else
static void stats(void) { printf("STATS"); }
#endif

int main(int argc, char **argv) {
    setvbuf(stdout, outbuf, _IOFBF, sizeof outbuf);
    setvbuf(stdin, inbuf, _IOLBF, sizeof inbuf);
    const char *s = argc > 1 ? argv[1] : "mixed";
    if (!strcmp(s, "mixed")) fill(2);
    else if (!strcmp(s, "freed")) fill(50);
    else if (!strcmp(s, "allfree")) { fill(N + 1); free(small[0]); small[0] = 0; }
    else { fprintf(stderr, "unknown scenario %s\n", s); return 2; }
    printf("READY\n"); fflush(stdout);
    char line[64];
    while (fgets(line, sizeof line, stdin)) {
        if (!strncmp(line, "quit", 4)) break;
        if (!strncmp(line, "stats", 5)) {
            size_t bytes, count;
            stats();
            live(&bytes, &count);
            printf(" live=%zu count=%zu\n", bytes, count);
        }
#if defined(STATIC_GLIBC)
        else if (!strncmp(line, "info", 4)) { malloc_info(0, stdout); printf("\n"); }
#endif
        else printf("pong\n");
        fflush(stdout);
    }
    return 0;
}
"""


def target(kind: str) -> Path:
    """The target built for ``kind``: jemalloc, tcmalloc, mimalloc (linked against Debian's
    library), musl / musl-static (musl-gcc), glibc-static (gcc -static, symbol table kept)."""
    if kind in LIBRARIES:
        return compile_c(ALLOC_TARGET, name=f"alloc-{kind}", flags=("-O1", "-g", f"-D{kind.upper()}"),
                         libs=(str(LIBRARIES[kind]),))
    if kind == "musl":
        return compile_c(ALLOC_TARGET, name="alloc-musl", flags=("-O1",), compiler="musl-gcc")
    if kind == "musl-static":
        return compile_c(ALLOC_TARGET, name="alloc-musl-static", flags=("-O1", "-static"), compiler="musl-gcc")
    if kind == "glibc-static":
        return compile_c(ALLOC_TARGET, name="alloc-glibc-static", flags=("-O1", "-static", "-DSTATIC_GLIBC"))
    raise ValueError(kind)


def stripped(binary: Path) -> Path:
    """A copy of ``binary`` without its symbol table (strip), cached beside it."""
    import subprocess

    out = binary.with_name(binary.name + "-stripped")
    if not out.exists():
        tmp = out.with_suffix(".tmp")
        subprocess.run([shutil.which("strip") or "strip", "-o", str(tmp), str(binary)], check=True)
        tmp.rename(out)
    return out


def parse_stats(line: str) -> dict[str, int]:
    assert line.startswith("STATS"), line
    return {k: int(v) for k, v in (item.split("=", 1) for item in line.split()[1:])}
