/*
 * plugins._rawtap: the raw-frame recorder's tap (plugins/raw_ring.py), one socket read's copy into
 * the shared byte ring as one C call, on the daemon's market-data loop.
 *
 * Why C: the Python closure it replaces (RawRing.read_writer's) cost the daemon ~0.6 us of
 * interpreter per one-frame read.  Here: the length word and datagram head, the frame table, the
 * read's bytes, a release store of the write cursor.
 *
 * Why streaming stores for large reads: the ring (64 MB by default) is larger than the last-level
 * cache, so every line a read is copied to is a miss, and an ordinary copy first fetches the line
 * (read for ownership) and then leaves it in the daemon's own caches, evicting its book and
 * parser state, for a reader in another process that comes much later.  Measured (bench daemon's
 * blast, reads of ~20 KB): two plugins-on pipelines in one run, this writer against the former
 * memcpy one (shm._fastring.RawWriter), 24 alternated pairs each: the daemon's CPU per message
 * -6.3 % [-16.0, -0.7] (load 1.8-3.5) and, started in the other order, -2.0 % [-9.9, +4.7] (load
 * 1.5-3.3); bench daemon's plugins loss per CPU second, runs alternated at load 2-12: memcpy 5.7,
 * 2.4, 3.7, 2.1, 5.4 %, streaming 0.8, 0.9, 1.3, 6.6, 3.7 %, no raw tap at all -0.3 / -0.4 %.  A
 * tap micro-benchmark (the call in a loop beside a stand-in for the daemon's other work) showed
 * no difference: the gain, if it holds in the quiet run, is in the real daemon's misses.  Small reads (a quiet market's one frame) keep memcpy: the
 * fence alone cost ~100 ns more per read (a C micro-benchmark).
 *
 * The record layout and the ordering rules are raw_ring.py's (its docstring); the word indices,
 * the record kind and the frame table's row size come from it through the constructor.  A
 * datagram the ring cannot take goes to ``refused`` (the tap's drop counting), and a frame table
 * that is not a contiguous 8-byte-item buffer to ``fallback`` (the Python closure, which converts
 * it): the daemon never sees an exception from here for its data.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif
#include "../shm/_fastbuf.h"

/* bodies at least this long are copied with streaming stores (see above) */
#define STREAM_MIN_BYTES 4096

/* n bytes from s to d, bypassing the caches where the cpu can; the caller fences before it
   publishes (streaming stores are not ordered with the release store after them) */
static void
copy_streaming(unsigned char *d, const unsigned char *s, size_t n)
{
#if defined(__SSE2__)
    while (n && ((uintptr_t)d & 15)) {  /* up to the destination's first 16-byte boundary */
        *d++ = *s++;
        n--;
    }
    for (; n >= 64; d += 64, s += 64, n -= 64) {
        __m128i a = _mm_loadu_si128((const __m128i *)s);
        __m128i b = _mm_loadu_si128((const __m128i *)(s + 16));
        __m128i c = _mm_loadu_si128((const __m128i *)(s + 32));
        __m128i e = _mm_loadu_si128((const __m128i *)(s + 48));
        _mm_stream_si128((__m128i *)d, a);
        _mm_stream_si128((__m128i *)(d + 16), b);
        _mm_stream_si128((__m128i *)(d + 32), c);
        _mm_stream_si128((__m128i *)(d + 48), e);
    }
    for (; n >= 16; d += 16, s += 16, n -= 16)
        _mm_stream_si128((__m128i *)d, _mm_loadu_si128((const __m128i *)s));
#endif
    memcpy(d, s, n);
}

static void
fence_streaming(void)
{
#if defined(__SSE2__)
    _mm_sfence();
#endif
}

typedef struct {
    PyObject_HEAD
    Py_buffer hdr;          /* the ring's header words, int64 */
    Py_buffer data;         /* the ring's data area */
    int held;
    int64_t *words;
    unsigned char *base;
    int64_t capacity, mask;
    Py_ssize_t w_write, w_read, w_closed;
    int64_t kind, row_bytes, skip;
    PyObject *refused;      /* (data, meta, count, stamp) -> None */
    PyObject *fallback;     /* (data, meta, count, stamp) -> None */
    PyObject *meta_obj;     /* the frame table last seen, its export held (the client reuses one) */
    Py_buffer meta;
    long long written;      /* datagrams this object wrote */
} RawWriter;

static void
rawwriter_release_all(RawWriter *self)
{
    if (self->held) {
        PyBuffer_Release(&self->hdr);
        PyBuffer_Release(&self->data);
        self->held = 0;
    }
    if (self->meta_obj != NULL) {
        PyBuffer_Release(&self->meta);
        Py_CLEAR(self->meta_obj);
    }
    self->words = NULL;
    self->base = NULL;
    Py_CLEAR(self->refused);
    Py_CLEAR(self->fallback);
}

static int
rawwriter_init(RawWriter *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"hdr", "data", "w_write", "w_read", "w_closed", "kind", "row_bytes", "skip",
                             "refused", "fallback", NULL};
    PyObject *hdr, *data, *refused, *fallback;
    Py_ssize_t w_write, w_read, w_closed;
    long long kind, row_bytes, skip;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOnnnLLLOO", kwlist, &hdr, &data, &w_write, &w_read, &w_closed,
                                     &kind, &row_bytes, &skip, &refused, &fallback))
        return -1;
    if (!PyCallable_Check(refused) || !PyCallable_Check(fallback) || kind < 0 || kind > 255 || row_bytes <= 0) {
        PyErr_SetString(PyExc_ValueError, "refused and fallback must be callables, kind fit a byte, row_bytes be > 0");
        return -1;
    }
    rawwriter_release_all(self);
    if (hold_writable(hdr, data, &self->hdr, &self->data) < 0)
        return -1;
    self->held = 1;
    Py_ssize_t hdr_words = self->hdr.len / 8;
    int64_t cap = (int64_t)self->data.len;
    if (w_write < 0 || w_read < 0 || w_closed < 0 || w_write >= hdr_words || w_read >= hdr_words ||
        w_closed >= hdr_words || cap < 64 || (cap & (cap - 1)) != 0) {
        rawwriter_release_all(self);
        PyErr_SetString(PyExc_ValueError, "header word index out of range, or a data area not a power of two");
        return -1;
    }
    self->words = (int64_t *)self->hdr.buf;
    self->base = (unsigned char *)self->data.buf;
    self->capacity = cap;
    self->mask = cap - 1;
    self->w_write = w_write;
    self->w_read = w_read;
    self->w_closed = w_closed;
    self->kind = kind;
    self->row_bytes = row_bytes;
    self->skip = skip;
    Py_INCREF(refused);
    self->refused = refused;
    Py_INCREF(fallback);
    self->fallback = fallback;
    self->written = 0;
    return 0;
}

static void
rawwriter_dealloc(RawWriter *self)
{
    rawwriter_release_all(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* The frame table of this read as a contiguous 8-byte-item buffer (the client's int64 array,
   exported once and kept while it is the same object); 0 when it is not one (the caller falls
   back). */
static int
rawwriter_table(RawWriter *self, PyObject *meta)
{
    if (meta == self->meta_obj)
        return 1;
    if (self->meta_obj != NULL) {
        PyBuffer_Release(&self->meta);
        Py_CLEAR(self->meta_obj);
    }
    Py_buffer view;
    if (PyObject_GetBuffer(meta, &view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) {
        PyErr_Clear();
        return 0;
    }
    const char *f = view.format != NULL ? view.format : "B";
    if (*f == '<' || *f == '=' || *f == '@')
        f++;
    if (view.itemsize != 8 || (strcmp(f, "q") != 0 && strcmp(f, "l") != 0)) {
        PyBuffer_Release(&view);
        return 0;
    }
    self->meta = view;
    Py_INCREF(meta);
    self->meta_obj = meta;
    return 1;
}

static PyObject *
rawwriter_put_read(RawWriter *self, PyObject *const *args, Py_ssize_t nargsf)
{
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (nargs != 4) {
        PyErr_Format(PyExc_TypeError, "put_read() takes 4 arguments (%zd given)", nargs);
        return NULL;
    }
    if (!self->held) {
        PyErr_SetString(PyExc_ValueError, "put_read() on a released raw ring writer");
        return NULL;
    }
    long long count = PyLong_AsLongLong(args[2]);
    if (count == -1 && PyErr_Occurred())
        return NULL;
    long long stamp = PyLong_AsLongLong(args[3]);
    if (stamp == -1 && PyErr_Occurred())
        return NULL;
    int t = count >= 0 && count <= 0xFFFFFFFFLL ? rawwriter_table(self, args[1]) : 0;
    int64_t nt = (int64_t)count * self->row_bytes;
    if (t == 0 || nt > (int64_t)self->meta.len)
        return PyObject_Vectorcall(self->fallback, args, 4, NULL);
    Py_buffer body;
    if (PyObject_GetBuffer(args[0], &body, PyBUF_SIMPLE) < 0)
        return NULL;
    int64_t nb = (int64_t)body.len;
    int64_t n = 16 + nt + nb;
    int64_t need = 8 + ((n + 7) & ~(int64_t)7);
    int64_t *w = self->words;
    /* this process is the write cursor's only writer: a relaxed load sees its own last store */
    int64_t cur = __atomic_load_n(&w[self->w_write], __ATOMIC_RELAXED);
    int64_t off = cur & self->mask;
    int64_t skip = need > self->capacity - off ? self->capacity - off : 0;
    /* acquire: the reader copied a record out before it stored the read cursor past it */
    int64_t read = __atomic_load_n(&w[self->w_read], __ATOMIC_ACQUIRE);
    if (cur + skip + need - read > self->capacity || __atomic_load_n(&w[self->w_closed], __ATOMIC_RELAXED)) {
        PyBuffer_Release(&body);
        return PyObject_Vectorcall(self->refused, args, 4, NULL);
    }
    unsigned char *d = self->base;
    if (skip) {
        memcpy(d + off, &self->skip, 8);
        off = 0;
    }
    /* the length word, then DATAGRAM_HEAD: kind u8, 3 pad bytes, count u32, stamp i64 */
    unsigned char head[24] = {0};
    uint32_t count32 = (uint32_t)count;
    memcpy(head, &n, 8);
    head[8] = (unsigned char)self->kind;
    memcpy(head + 12, &count32, 4);
    memcpy(head + 16, &stamp, 8);
    memcpy(d + off, head, 24);
    if (nt)
        memcpy(d + off + 24, self->meta.buf, (size_t)nt);
    if (nb >= STREAM_MIN_BYTES) {
        copy_streaming(d + off + 24 + nt, body.buf, (size_t)nb);
        fence_streaming();
    } else if (nb) {
        memcpy(d + off + 24 + nt, body.buf, (size_t)nb);
    }
    PyBuffer_Release(&body);
    /* release: the record is in place before the reader can see the cursor past it */
    __atomic_store_n(&w[self->w_write], cur + skip + need, __ATOMIC_RELEASE);
    self->written++;
    Py_RETURN_NONE;
}

static PyObject *
rawwriter_get_written(RawWriter *self, void *Py_UNUSED(closure))
{
    return PyLong_FromLongLong(self->written);
}

static PyObject *
rawwriter_release(RawWriter *self, PyObject *Py_UNUSED(ignored))
{
    rawwriter_release_all(self);
    Py_RETURN_NONE;
}

static PyMethodDef rawwriter_methods[] = {
    {"put_read", (PyCFunction)(void (*)(void))rawwriter_put_read, METH_FASTCALL,
     "put_read(data, meta, count, stamp): one socket read into the ring as one datagram, or to refused()."},
    {"release", (PyCFunction)rawwriter_release, METH_NOARGS,
     "Drop the buffer exports; put_read() raises afterwards."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef rawwriter_getset[] = {
    {"written", (getter)rawwriter_get_written, NULL, "datagrams written by put_read()", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject RawWriterType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "plugins._rawtap.RawWriter",
    .tp_basicsize = sizeof(RawWriter),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "The raw-frame tap's copy of one socket read into a raw byte ring (see plugins/raw_ring.py).",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)rawwriter_init,
    .tp_dealloc = (destructor)rawwriter_dealloc,
    .tp_methods = rawwriter_methods,
    .tp_getset = rawwriter_getset,
};

static struct PyModuleDef rawtap_module = {
    PyModuleDef_HEAD_INIT, "plugins._rawtap",
    "The raw-frame recorder's tap: one socket read into the raw byte ring per call.", -1, NULL,
};

PyMODINIT_FUNC
PyInit__rawtap(void)
{
    if (PyType_Ready(&RawWriterType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&rawtap_module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&RawWriterType);
    if (PyModule_AddObject(m, "RawWriter", (PyObject *)&RawWriterType) < 0) {
        Py_DECREF(&RawWriterType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
