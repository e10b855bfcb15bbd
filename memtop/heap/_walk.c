/* The native inner loop of the chunk walk (memtop.heap.walk), as a CPython extension module.
 *
 * Built when memtop is installed (setup.py: an optional extension, so a machine without a C
 * compiler or Python headers installs memtop with the pure-Python loop only). Nothing is ever
 * compiled or loaded at run time: the module is a file of the installed package, like its .py
 * files (issue 15: a loader that compiled into $XDG_CACHE_HOME let the owner of that directory
 * run code as root).
 *
 * walk_window does exactly what memtop.heap.walk._window_python does for one window: follow chunk
 * sizes, note each chunk whose successor has PREV_INUSE clear, note the tcache candidates it lands
 * on (a stop from the tcache lists, or a chunk whose second user word holds a tcache key:
 * malloc.c tcache_put sets e->key), and stop at a zero size. The loop runs without the GIL.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum { DONE = 0, ZERO = 2 };

#define NO_PREV (-((int64_t)1 << 62)) /* memtop.heap.walk.NO_PREV: no chunk before this one */

typedef struct {
    int64_t *v;
    size_t n, cap;
} vec;

static int vec_push(vec *a, int64_t x)
{
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 1024;
        int64_t *v = realloc(a->v, cap * sizeof *v);
        if (v == NULL)
            return -1;
        a->v = v;
        a->cap = cap;
    }
    a->v[a->n++] = x;
    return 0;
}

static inline uint64_t word(const unsigned char *base, int64_t i)
{
    uint64_t w;
    memcpy(&w, base + i * 8, 8); /* no alignment assumption about the buffer */
    return w;
}

/* Fastbin candidates: a chunk of a fastbin size whose fd (chunk + 16), revealed (malloc.c
 * REVEAL_PTR: (&fd >> 12) ^ fd with safe-linking), is 0 or a 16-aligned address inside the
 * arena's heaps. Every chunk on a fastbin list is one; an in-use chunk may be one by chance,
 * which costs nothing: the lists are followed from fastbinsY through these (address,
 * next | size / 16) pairs, and a list node that is not among them sends the walk back to reading. */
typedef struct {
    vec *out;      /* NULL: not collected (the pure-Python walk reads the lists instead) */
    int packed_free; /* free chunks as packed (address, size) instead of (prev, i) indices */
    uint64_t base; /* address of word 0 of the window */
    uint64_t lo, hi;
    int safe;
} fastcand;

#define MAX_FAST_CHUNK 0xb0 /* NFASTBINS 10: bins of 32 .. 176-byte chunks (malloc.c fastbin_index) */

/* Note chunk i (header s) if it could be a fastbin node; -1 when out of memory. */
static inline int fast_candidate(const unsigned char *w, int64_t i, uint64_t s, const fastcand *fc)
{
    if (fc->out == NULL || (s & ~(uint64_t)7) - 32 > MAX_FAST_CHUNK - 32 || (s & 8))
        return 0;
    uint64_t at = fc->base + (uint64_t)i * 8, fd = word(w, i + 2);
    uint64_t next = fc->safe ? ((at + 16) >> 12) ^ fd : fd;
    if (next != 0 && ((next & 15) || next < fc->lo || next >= fc->hi))
        return 0;
    /* next is 16-aligned and size / 16 <= 11: one word holds both */
    if (vec_push(fc->out, (int64_t)at) < 0 || vec_push(fc->out, (int64_t)(next | (s >> 4 & 15))) < 0)
        return -1;
    return 0;
}

static inline int is_key(const unsigned char *w, int64_t i, const uint64_t *keys, Py_ssize_t nkeys)
{
    if (!nkeys || (i & 1)) /* 16-byte aligned chunks only, as the Python loop's key search */
        return 0;
    uint64_t second = word(w, i + 3);
    for (Py_ssize_t k = 0; k < nkeys; k++)
        if (second == keys[k])
            return 1;
    return 0;
}

/* The loop, on plain C data; returns DONE, ZERO, or -1 when out of memory.
 *
 * After each chunk, a run of chunks with the very same header (same size, PREV_INUSE set: none
 * of them follows a free chunk) is walked with the step known in advance: the next index then
 * does not wait for the load of the header (a chain of dependent loads costs a cache latency per
 * chunk), only the comparison does, and the CPU runs ahead. Each chunk of the run gets the same
 * checks; a tcache key or a stop hands the chunk back to the general path. */
static int walk(const unsigned char *w, int64_t lim, const int64_t *stops, Py_ssize_t nstops,
                const uint64_t *keys, Py_ssize_t nkeys, int64_t *i_io, int64_t *prev_io, int64_t *n_io,
                int64_t *first_free_io, vec *free_out, vec *tc_out, const fastcand *fc)
{
    int64_t i = *i_io, prev = *prev_io, n = *n_io;
    Py_ssize_t si = 0;
    int status = DONE;
    while (i < lim) {
        while (si < nstops && stops[si] < i) /* a candidate inside a chunk: not a tcache chunk */
            si++;
        int hit = 0;
        if (si < nstops && stops[si] == i) {
            hit = 1;
            while (si < nstops && stops[si] == i)
                si++;
        }
        if (!hit)
            hit = is_key(w, i, keys, nkeys);
        if (hit && vec_push(tc_out, i) < 0)
            return -1;
        uint64_t s = word(w, i + 1);
        if (!(s & 1)) {
            if (fc->packed_free) { /* (address, size) of the free chunk before this one */
                if (prev == NO_PREV) { /* told after the walk of the window, as the Python loop does */
                    if (*first_free_io < 0)
                        *first_free_io = i;
                } else if (vec_push(free_out, (int64_t)(fc->base + (uint64_t)prev * 8)) < 0 ||
                           vec_push(free_out, (i - prev) * 8) < 0) {
                    return -1;
                }
            } else if (vec_push(free_out, prev) < 0 || vec_push(free_out, i) < 0) {
                return -1;
            }
        }
        if (fast_candidate(w, i, s, fc) < 0)
            return -1;
        prev = i;
        n++;
        uint64_t step = s >> 3;
        if (step == 0) {
            status = ZERO;
            break;
        }
        i += (int64_t)step; /* step < 2**61 and i < lim: no overflow */
        if (!(s & 1))
            continue;
        int64_t bound = si < nstops && stops[si] < lim ? stops[si] : lim;
        while (i < bound && word(w, i + 1) == s && !is_key(w, i, keys, nkeys)) {
            if (fast_candidate(w, i, s, fc) < 0)
                return -1;
            prev = i;
            n++;
            i += (int64_t)step;
        }
    }
    *i_io = i;
    *prev_io = prev;
    *n_io = n;
    return status;
}

static int extend_bytearray(PyObject *array, const vec *a)
{
    if (!a->n)
        return 0;
    Py_ssize_t old = PyByteArray_GET_SIZE(array), add = (Py_ssize_t)(a->n * sizeof(int64_t));
    if (PyByteArray_Resize(array, old + add) < 0)
        return -1;
    memcpy(PyByteArray_AS_STRING(array) + old, a->v, (size_t)add);
    return 0;
}

static int extend_list(PyObject *list, const vec *a)
{
    for (size_t k = 0; k < a->n; k++) {
        PyObject *x = PyLong_FromLongLong(a->v[k]);
        if (x == NULL)
            return -1;
        int rc = PyList_Append(list, x);
        Py_DECREF(x);
        if (rc < 0)
            return -1;
    }
    return 0;
}

PyDoc_STRVAR(walk_window_doc,
"walk_window(data, limit, stops, keys, prev, free_flat, tc_hits[, cands, base, lo, hi, safe])\n"
"-> (i, prev, chunks, status, first_free)\n\n"
"Walk the chunk headers of one window (``data``: a bytes-like object of 64-bit words) from word\n"
"index 0 while the index is below ``limit``. ``stops``: sorted word indices of tcache candidates;\n"
"``keys``: tcache key values. Appends (prev, i) pairs of free chunks to ``free_flat`` (a list), or\n"
"(address, size) pairs packed when it is a bytearray (then ``first_free`` is the index of a chunk\n"
"that says the chunk before the window's first is free, else -1), and the\n"
"indices of tcache hits to ``tc_hits``. ``status`` is 2 when a zero size stopped the walk (then\n"
"``prev`` is the zero-size chunk), else 0. Optional ``cands, base, lo, hi, safe``: append the\n"
"fastbin candidates (address, revealed fd | size / 16: native 64-bit words) to the bytearray\n"
"``cands``;"
"``base`` is the address of word 0, [lo, hi) the arena's heaps, ``safe`` safe-linking.");

static PyObject *walk_window(PyObject *self, PyObject *args)
{
    Py_buffer data;
    Py_ssize_t limit;
    PyObject *stops_obj, *keys_obj, *free_obj, *tc_list, *cand_out = NULL;
    long long prev;
    unsigned long long base = 0, lo = 0, hi = 0;
    int safe = 1;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*nOOLOO!|OKKKp", &data, &limit, &stops_obj, &keys_obj, &prev,
                          &free_obj, &PyList_Type, &tc_list, &cand_out, &base, &lo, &hi, &safe))
        return NULL;
    if (!PyList_Check(free_obj) && !PyByteArray_Check(free_obj)) {
        PyBuffer_Release(&data);
        PyErr_SetString(PyExc_TypeError, "free_flat must be a list or a bytearray");
        return NULL;
    }
    if (cand_out == Py_None)
        cand_out = NULL;
    if (cand_out != NULL && !PyByteArray_Check(cand_out)) {
        PyBuffer_Release(&data);
        PyErr_SetString(PyExc_TypeError, "cands must be a bytearray or None");
        return NULL;
    }
    vec cand_vec = {0};
    fastcand fc = {cand_out != NULL ? &cand_vec : NULL, PyByteArray_Check(free_obj), base, lo, hi, safe};
    PyObject *result = NULL, *stops_seq = NULL, *keys_seq = NULL;
    int64_t *stops = NULL;
    uint64_t *keys = NULL;
    vec free_out = {0}, tc_out = {0};
    /* Every chunk read is w[i + 1] and w[i + 3] with 0 <= i < limit: all inside the buffer. */
    if (limit < 0 || (data.len < 32 && limit > 0) || (limit > 0 && limit > (data.len - 32) / 8)) {
        PyErr_SetString(PyExc_ValueError, "limit reaches past the end of the window");
        goto out;
    }
    stops_seq = PySequence_Fast(stops_obj, "stops must be a sequence");
    keys_seq = PySequence_Fast(keys_obj, "keys must be a sequence");
    if (stops_seq == NULL || keys_seq == NULL)
        goto out;
    Py_ssize_t nstops = PySequence_Fast_GET_SIZE(stops_seq), nkeys = PySequence_Fast_GET_SIZE(keys_seq);
    stops = malloc((nstops ? nstops : 1) * sizeof *stops);
    keys = malloc((nkeys ? nkeys : 1) * sizeof *keys);
    if (stops == NULL || keys == NULL) {
        PyErr_NoMemory();
        goto out;
    }
    for (Py_ssize_t k = 0; k < nstops; k++) {
        stops[k] = PyLong_AsLongLong(PySequence_Fast_GET_ITEM(stops_seq, k));
        if (stops[k] == -1 && PyErr_Occurred())
            goto out;
        if (k && stops[k] < stops[k - 1]) {
            PyErr_SetString(PyExc_ValueError, "stops must be sorted");
            goto out;
        }
    }
    for (Py_ssize_t k = 0; k < nkeys; k++) {
        keys[k] = PyLong_AsUnsignedLongLong(PySequence_Fast_GET_ITEM(keys_seq, k));
        if (keys[k] == (uint64_t)-1 && PyErr_Occurred())
            goto out;
    }
    int64_t i = 0, p = prev, n = 0, first_free = -1;
    int status;
    Py_BEGIN_ALLOW_THREADS
    status = walk((const unsigned char *)data.buf, limit, stops, nstops, keys, nkeys, &i, &p, &n, &first_free,
                  &free_out, &tc_out, &fc);
    Py_END_ALLOW_THREADS
    if (status < 0) {
        PyErr_NoMemory();
        goto out;
    }
    if ((fc.packed_free ? extend_bytearray(free_obj, &free_out) : extend_list(free_obj, &free_out)) < 0 ||
        extend_list(tc_list, &tc_out) < 0)
        goto out;
    if (cand_out != NULL && extend_bytearray(cand_out, &cand_vec) < 0)
        goto out;
    result = Py_BuildValue("LLLiL", (long long)i, (long long)p, (long long)n, status, (long long)first_free);
out:
    free(cand_vec.v);
    free(free_out.v);
    free(tc_out.v);
    free(stops);
    free(keys);
    Py_XDECREF(stops_seq);
    Py_XDECREF(keys_seq);
    PyBuffer_Release(&data);
    return result;
}

static int cmp_pair(const void *a, const void *b)
{
    const uint64_t *x = a, *y = b;
    if (x[0] != y[0])
        return x[0] < y[0] ? -1 : 1;
    return x[1] < y[1] ? -1 : x[1] > y[1];
}

PyDoc_STRVAR(follow_fastbins_doc,
"follow_fastbins(cands, heads) -> (status, address, counts)\n\n"
"Follow each fastbinsY list (``heads``: its 10 heads) through the candidates collected by\n"
"walk_window (``cands``, a bytearray of (address, revealed fd | size / 16) pairs), in place: on\n"
"``status`` 0, ``cands`` now holds only the chunks on the lists, as (address, size) pairs sorted\n"
"by address, and ``counts`` is a tuple of each list's length. 1: the node at ``address`` is not a\n"
"candidate (misaligned, outside the walked heaps, or changed); 2: its size is not its bin's;\n"
"3: a node is met twice (a loop). On anything but 0 ``cands`` is left unusable and the caller\n"
"reads the lists itself (memtop.heap.walk.follow_fastbins), which explains the fault.");

/* Index of the candidate whose address (bit 0 may be set: visited) is ``p``, or -1. */
static Py_ssize_t find_candidate(const uint64_t *t, Py_ssize_t n, uint64_t p)
{
    Py_ssize_t lo = 0, hi = n;
    while (lo < hi) {
        Py_ssize_t mid = lo + (hi - lo) / 2;
        if ((t[2 * mid] & ~(uint64_t)15) < p)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n && (t[2 * lo] & ~(uint64_t)15) == p ? lo : -1;
}

static PyObject *follow_fastbins(PyObject *self, PyObject *args)
{
    PyObject *cands_obj, *heads_obj;
    (void)self;
    if (!PyArg_ParseTuple(args, "O!O", &PyByteArray_Type, &cands_obj, &heads_obj))
        return NULL;
    PyObject *heads = PySequence_Fast(heads_obj, "heads must be a sequence");
    if (heads == NULL)
        return NULL;
    Py_ssize_t nheads = PySequence_Fast_GET_SIZE(heads);
    uint64_t head_values[64];
    Py_ssize_t counts[64] = {0};
    if (nheads > 64) {
        Py_DECREF(heads);
        PyErr_SetString(PyExc_ValueError, "too many fastbins");
        return NULL;
    }
    for (Py_ssize_t b = 0; b < nheads; b++) {
        head_values[b] = PyLong_AsUnsignedLongLong(PySequence_Fast_GET_ITEM(heads, b));
        if (head_values[b] == (uint64_t)-1 && PyErr_Occurred()) {
            Py_DECREF(heads);
            return NULL;
        }
    }
    Py_DECREF(heads);
    Py_buffer view; /* held while the GIL is released: the bytearray cannot be resized meanwhile */
    if (PyObject_GetBuffer(cands_obj, &view, PyBUF_WRITABLE) < 0)
        return NULL;
    uint64_t *t = view.buf;
    Py_ssize_t n = view.len / 16, kept = 0;
    int status = 0;
    uint64_t bad = 0;
    Py_BEGIN_ALLOW_THREADS
    int sorted = 1;
    for (Py_ssize_t k = 1; k < n && sorted; k++)
        sorted = t[2 * k - 2] < t[2 * k];
    if (!sorted)
        qsort(t, (size_t)n, 16, cmp_pair);
    for (Py_ssize_t b = 0; b < nheads && status == 0; b++) {
        uint64_t expected = (uint64_t)(b + 2) * 16, p = head_values[b];
        while (p) {
            Py_ssize_t k = find_candidate(t, n, p);
            if (k < 0) {
                status = 1;
                break;
            }
            if ((t[2 * k + 1] & 15) << 4 != expected) {
                status = 2;
                break;
            }
            if (t[2 * k] & 1) {
                status = 3;
                break;
            }
            t[2 * k] |= 1; /* on a list: addresses are 16-aligned, bit 0 is free */
            counts[b]++;
            p = t[2 * k + 1] & ~(uint64_t)15;
        }
        bad = p;
    }
    if (status == 0) {
        for (Py_ssize_t k = 0; k < n; k++) {
            if (t[2 * k] & 1) {
                t[2 * kept] = t[2 * k] & ~(uint64_t)15;
                t[2 * kept + 1] = (t[2 * k + 1] & 15) << 4;
                kept++;
            }
        }
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&view);
    if (status > 0)
        return Py_BuildValue("iKO", status, (unsigned long long)bad, Py_None);
    if (PyByteArray_Resize(cands_obj, kept * 16) < 0)
        return NULL;
    PyObject *tuple = PyTuple_New(nheads);
    if (tuple == NULL)
        return NULL;
    for (Py_ssize_t b = 0; b < nheads; b++) {
        PyObject *c = PyLong_FromSsize_t(counts[b]);
        if (c == NULL) {
            Py_DECREF(tuple);
            return NULL;
        }
        PyTuple_SET_ITEM(tuple, b, c);
    }
    return Py_BuildValue("iKN", 0, 0ULL, tuple);
}

PyDoc_STRVAR(merge_runs_doc,
"merge_runs(free, fast, min_length, top_end, end_at) -> (big, run_below, overlap)\n\n"
"memtop.heap.walk.merge_runs over two lists of (address, size) pairs, each given packed (native\n"
"64-bit words) and sorted, keeping only what the trim prediction needs: ``big`` lists [start, end]\n"
"of the runs at least ``min_length`` long or ending at ``top_end``, ``run_below`` is the length of\n"
"the run ending at ``end_at`` (0 if none). When two chunks overlap, ``big`` is None and\n"
"``overlap`` is the address of the second.");

static PyObject *merge_runs(PyObject *self, PyObject *args)
{
    Py_buffer a, b;
    unsigned long long min_length, top_end, end_at;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*y*KKK", &a, &b, &min_length, &top_end, &end_at))
        return NULL;
    const uint64_t *x = a.buf, *y = b.buf;
    Py_ssize_t nx = a.len / 16, ny = b.len / 16, ix = 0, iy = 0;
    vec big = {0};
    uint64_t overlap = 0, start = 0, end = 0, run_below = 0;
    int status = 0, open_run = 0;
    Py_BEGIN_ALLOW_THREADS
    for (;;) {
        const uint64_t *c = NULL;
        if (ix < nx || iy < ny) {
            if (iy >= ny || (ix < nx && cmp_pair(x + 2 * ix, y + 2 * iy) <= 0))
                c = x + 2 * ix++;
            else
                c = y + 2 * iy++;
            if (open_run && c[0] == end) {
                end = c[0] + c[1];
                continue;
            }
            if (open_run && c[0] < end) {
                overlap = c[0];
                status = 1;
                break;
            }
        }
        if (open_run) { /* the run [start, end) is complete */
            if (end == end_at)
                run_below = end - start;
            if ((end - start >= min_length || end == top_end) &&
                (vec_push(&big, (int64_t)start) < 0 || vec_push(&big, (int64_t)end) < 0)) {
                status = -1;
                break;
            }
        }
        if (c == NULL)
            break;
        start = c[0];
        end = c[0] + c[1];
        open_run = 1;
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&a);
    PyBuffer_Release(&b);
    PyObject *result = NULL, *list = NULL;
    if (status < 0) {
        PyErr_NoMemory();
        goto out;
    }
    if (status > 0) {
        result = Py_BuildValue("OKK", Py_None, 0ULL, (unsigned long long)overlap);
        goto out;
    }
    list = PyList_New(0);
    if (list == NULL)
        goto out;
    for (size_t k = 0; k < big.n; k += 2) {
        PyObject *run = Py_BuildValue("[KK]", (unsigned long long)big.v[k], (unsigned long long)big.v[k + 1]);
        if (run == NULL || PyList_Append(list, run) < 0) {
            Py_XDECREF(run);
            goto out;
        }
        Py_DECREF(run);
    }
    result = Py_BuildValue("OKK", list, (unsigned long long)run_below, 0ULL);
out:
    Py_XDECREF(list);
    free(big.v);
    return result;
}

static PyMethodDef methods[] = {
    {"walk_window", walk_window, METH_VARARGS, walk_window_doc},
    {"follow_fastbins", follow_fastbins, METH_VARARGS, follow_fastbins_doc},
    {"merge_runs", merge_runs, METH_VARARGS, merge_runs_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "memtop.heap._walk",
    "The native inner loop of memtop's chunk walk (see memtop/heap/_walk.c).", -1, methods,
};

PyMODINIT_FUNC PyInit__walk(void)
{
    return PyModule_Create(&module);
}
