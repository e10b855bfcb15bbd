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

/* The loop, on plain C data; returns DONE, ZERO, or -1 when out of memory. */
static int walk(const unsigned char *w, int64_t lim, const int64_t *stops, Py_ssize_t nstops,
                const uint64_t *keys, Py_ssize_t nkeys, int64_t *i_io, int64_t *prev_io, int64_t *n_io,
                vec *free_out, vec *tc_out)
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
        if (!hit && nkeys && !(i & 1)) { /* 16-byte aligned, as the Python loop's key search */
            uint64_t second = word(w, i + 3);
            for (Py_ssize_t k = 0; k < nkeys && !hit; k++)
                hit = second == keys[k];
        }
        if (hit && vec_push(tc_out, i) < 0)
            return -1;
        uint64_t s = word(w, i + 1);
        if (!(s & 1)) {
            if (vec_push(free_out, prev) < 0 || vec_push(free_out, i) < 0)
                return -1;
        }
        prev = i;
        n++;
        uint64_t step = s >> 3;
        if (step == 0) {
            status = ZERO;
            break;
        }
        i += (int64_t)step; /* step < 2**61 and i < lim: no overflow */
    }
    *i_io = i;
    *prev_io = prev;
    *n_io = n;
    return status;
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
"walk_window(data, limit, stops, keys, prev, free_flat, tc_hits) -> (i, prev, chunks, status)\n\n"
"Walk the chunk headers of one window (``data``: a bytes-like object of 64-bit words) from word\n"
"index 0 while the index is below ``limit``. ``stops``: sorted word indices of tcache candidates;\n"
"``keys``: tcache key values. Appends (prev, i) pairs of free chunks to ``free_flat`` and the\n"
"indices of tcache hits to ``tc_hits``. ``status`` is 2 when a zero size stopped the walk (then\n"
"``prev`` is the zero-size chunk), else 0.");

static PyObject *walk_window(PyObject *self, PyObject *args)
{
    Py_buffer data;
    Py_ssize_t limit;
    PyObject *stops_obj, *keys_obj, *free_list, *tc_list;
    long long prev;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*nOOLO!O!", &data, &limit, &stops_obj, &keys_obj, &prev,
                          &PyList_Type, &free_list, &PyList_Type, &tc_list))
        return NULL;
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
    int64_t i = 0, p = prev, n = 0;
    int status;
    Py_BEGIN_ALLOW_THREADS
    status = walk((const unsigned char *)data.buf, limit, stops, nstops, keys, nkeys, &i, &p, &n,
                  &free_out, &tc_out);
    Py_END_ALLOW_THREADS
    if (status < 0) {
        PyErr_NoMemory();
        goto out;
    }
    if (extend_list(free_list, &free_out) < 0 || extend_list(tc_list, &tc_out) < 0)
        goto out;
    result = Py_BuildValue("LLLi", (long long)i, (long long)p, (long long)n, status);
out:
    free(free_out.v);
    free(tc_out.v);
    free(stops);
    free(keys);
    Py_XDECREF(stops_seq);
    Py_XDECREF(keys_seq);
    PyBuffer_Release(&data);
    return result;
}

static PyMethodDef methods[] = {
    {"walk_window", walk_window, METH_VARARGS, walk_window_doc},
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
