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
 * Holding a burst.  A read of at least hold_min_bytes means the socket had many frames queued: the
 * daemon is busy with a burst, the one time its cpu is worth most.  Such a read (a bytes object,
 * immutable) is not copied then but held by reference, with its frame table's rows (the client
 * reuses its table), and every read after it is held too, to keep the ring in the reads' order; the
 * held reads go into the ring, oldest first, when the daemon calls flush() (plugins.recorder_raw's
 * RawTap: once no burst-sized read came for a while, in slices between the loop's other work), or
 * when hold_max_bytes would be passed (the oldest, as much as the new read adds: a burst longer than
 * the bound costs what an unheld one does).  What is held lives in the daemon's memory only: a kill
 * -9 of the daemon loses it (at most hold_max_bytes), SIGTERM does not (stop_holding()).
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

/* one held socket read: the bytes object (immutable: held by reference, not copied), its frame
   table's rows copied (the client reuses its table), the frame count and the receipt stamp */
typedef struct {
    PyObject *data;
    PyObject *table;
    long long count, stamp;
} Held;

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
    /* reads held by reference while a burst lasts (see "Holding a burst" above), oldest first */
    Held *hq;
    Py_ssize_t hq_cap, hq_head, hq_len;
    int64_t hold_min, hold_max, held_bytes, last_burst_stamp;
    PyObject *on_hold;      /* () -> None, when the first read is held; or NULL */
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
    Py_CLEAR(self->on_hold);
    for (; self->hq_len > 0; self->hq_len--) {
        Held *e = &self->hq[self->hq_head];
        Py_CLEAR(e->data);
        Py_CLEAR(e->table);
        self->hq_head = (self->hq_head + 1) % self->hq_cap;
    }
    PyMem_Free(self->hq);
    self->hq = NULL;
    self->hq_cap = self->hq_head = 0;
    self->held_bytes = 0;
}

static int
rawwriter_init(RawWriter *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"hdr", "data", "w_write", "w_read", "w_closed", "kind", "row_bytes", "skip",
                             "refused", "fallback", "hold_min_bytes", "hold_max_bytes", "on_hold", NULL};
    PyObject *hdr, *data, *refused, *fallback, *on_hold = Py_None;
    Py_ssize_t w_write, w_read, w_closed;
    long long kind, row_bytes, skip, hold_min = 0, hold_max = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOnnnLLLOO|LLO", kwlist, &hdr, &data, &w_write, &w_read,
                                     &w_closed, &kind, &row_bytes, &skip, &refused, &fallback, &hold_min,
                                     &hold_max, &on_hold))
        return -1;
    if (!PyCallable_Check(refused) || !PyCallable_Check(fallback) || kind < 0 || kind > 255 || row_bytes <= 0) {
        PyErr_SetString(PyExc_ValueError, "refused and fallback must be callables, kind fit a byte, row_bytes be > 0");
        return -1;
    }
    if (hold_min < 0 || hold_max < 0 || (on_hold != Py_None && !PyCallable_Check(on_hold))) {
        PyErr_SetString(PyExc_ValueError, "hold_min_bytes and hold_max_bytes must be >= 0, on_hold None or a callable");
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
    self->hold_min = hold_min;
    self->hold_max = hold_max;
    self->last_burst_stamp = 0;
    if (on_hold != Py_None) {
        Py_INCREF(on_hold);
        self->on_hold = on_hold;
    }
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

/* One datagram (the frame table's nt bytes, the read's nb bytes) into the ring: 1, or 0 when the
   ring has no room for it or is closed (the caller counts it as refused). */
static int
rawwriter_write(RawWriter *self, const void *table, int64_t nt, const void *body, int64_t nb, long long count,
                long long stamp)
{
    int64_t n = 16 + nt + nb;
    int64_t need = 8 + ((n + 7) & ~(int64_t)7);
    int64_t *w = self->words;
    /* this process is the write cursor's only writer: a relaxed load sees its own last store */
    int64_t cur = __atomic_load_n(&w[self->w_write], __ATOMIC_RELAXED);
    int64_t off = cur & self->mask;
    int64_t skip = need > self->capacity - off ? self->capacity - off : 0;
    /* acquire: the reader copied a record out before it stored the read cursor past it */
    int64_t read = __atomic_load_n(&w[self->w_read], __ATOMIC_ACQUIRE);
    if (cur + skip + need - read > self->capacity || __atomic_load_n(&w[self->w_closed], __ATOMIC_RELAXED))
        return 0;
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
        memcpy(d + off + 24, table, (size_t)nt);
    if (nb >= STREAM_MIN_BYTES) {
        copy_streaming(d + off + 24 + nt, body, (size_t)nb);
        fence_streaming();
    } else if (nb) {
        memcpy(d + off + 24 + nt, body, (size_t)nb);
    }
    /* release: the record is in place before the reader can see the cursor past it */
    __atomic_store_n(&w[self->w_write], cur + skip + need, __ATOMIC_RELEASE);
    self->written++;
    return 1;
}

/* The oldest held read into the ring (or to refused()); -1 with an exception set when refused()
   raised. */
static int
rawwriter_flush_one(RawWriter *self)
{
    Held e = self->hq[self->hq_head];
    self->hq[self->hq_head].data = self->hq[self->hq_head].table = NULL;
    self->hq_head = (self->hq_head + 1) % self->hq_cap;
    self->hq_len--;
    self->held_bytes -= PyBytes_GET_SIZE(e.data);
    int rc = 0;
    if (!rawwriter_write(self, PyBytes_AS_STRING(e.table), PyBytes_GET_SIZE(e.table), PyBytes_AS_STRING(e.data),
                         PyBytes_GET_SIZE(e.data), e.count, e.stamp)) {
        PyObject *args[4] = {e.data, e.table, PyLong_FromLongLong(e.count), PyLong_FromLongLong(e.stamp)};
        PyObject *r = args[2] != NULL && args[3] != NULL ? PyObject_Vectorcall(self->refused, args, 4, NULL) : NULL;
        Py_XDECREF(args[2]);
        Py_XDECREF(args[3]);
        if (r == NULL)
            rc = -1;
        Py_XDECREF(r);
    }
    Py_DECREF(e.data);
    Py_DECREF(e.table);
    return rc;
}

/* Held reads, oldest first, into the ring until at least max_bytes of them went (all: < 0). */
static int
rawwriter_flush_bytes(RawWriter *self, int64_t max_bytes)
{
    int64_t before = self->held_bytes;
    while (self->hq_len > 0 && (max_bytes < 0 || before - self->held_bytes < max_bytes))
        if (rawwriter_flush_one(self) < 0)
            return -1;
    return 0;
}

/* Hold one read (a bytes object) by reference, its table's rows copied: 0, or -1 (no memory). */
static int
rawwriter_hold(RawWriter *self, PyObject *data, int64_t nt, long long count, long long stamp)
{
    if (self->hq_len == self->hq_cap) {
        Py_ssize_t cap = self->hq_cap ? 2 * self->hq_cap : 256;
        Held *q = PyMem_New(Held, cap);
        if (q == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        for (Py_ssize_t i = 0; i < self->hq_len; i++)
            q[i] = self->hq[(self->hq_head + i) % self->hq_cap];
        PyMem_Free(self->hq);
        self->hq = q;
        self->hq_cap = cap;
        self->hq_head = 0;
    }
    PyObject *table = PyBytes_FromStringAndSize((const char *)self->meta.buf, (Py_ssize_t)nt);
    if (table == NULL)
        return -1;
    Held *e = &self->hq[(self->hq_head + self->hq_len) % self->hq_cap];
    Py_INCREF(data);
    e->data = data;
    e->table = table;
    e->count = count;
    e->stamp = stamp;
    self->hq_len++;
    self->held_bytes += PyBytes_GET_SIZE(data);
    return 0;
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
    if (t == 0 || nt > (int64_t)self->meta.len) {
        if (rawwriter_flush_bytes(self, -1) < 0)  /* held reads first: the ring keeps the reads' order */
            return NULL;
        return PyObject_Vectorcall(self->fallback, args, 4, NULL);
    }
    PyObject *data = args[0];
    if (self->hold_max > 0 && PyBytes_CheckExact(data)) {
        int64_t nb = PyBytes_GET_SIZE(data);
        int burst = nb >= self->hold_min;
        if (burst)
            self->last_burst_stamp = stamp;
        if ((burst || self->hq_len > 0) && nb <= self->hold_max) {
            /* over the bound: the oldest go now, as much as this read adds (a burst longer than the
               bound costs what an unheld one does) */
            while (self->hq_len > 0 && self->held_bytes + nb > self->hold_max)
                if (rawwriter_flush_one(self) < 0)
                    return NULL;
            if (rawwriter_hold(self, data, nt, count, stamp) < 0)
                return NULL;
            if (self->hq_len == 1 && self->on_hold != NULL)
                return PyObject_CallNoArgs(self->on_hold);
            Py_RETURN_NONE;
        }
    }
    if (self->hq_len > 0 && rawwriter_flush_bytes(self, -1) < 0)
        return NULL;
    Py_buffer body;
    if (PyObject_GetBuffer(data, &body, PyBUF_SIMPLE) < 0)
        return NULL;
    int ok = rawwriter_write(self, self->meta.buf, nt, body.buf, (int64_t)body.len, count, stamp);
    PyBuffer_Release(&body);
    if (!ok)
        return PyObject_Vectorcall(self->refused, args, 4, NULL);
    Py_RETURN_NONE;
}

static PyObject *
rawwriter_flush(RawWriter *self, PyObject *const *args, Py_ssize_t nargs)
{
    long long max_bytes = -1;
    if (nargs > 1) {
        PyErr_Format(PyExc_TypeError, "flush() takes at most 1 argument (%zd given)", nargs);
        return NULL;
    }
    if (nargs == 1 && (max_bytes = PyLong_AsLongLong(args[0])) == -1 && PyErr_Occurred())
        return NULL;
    if (!self->held && self->hq_len > 0) {
        PyErr_SetString(PyExc_ValueError, "flush() on a released raw ring writer");
        return NULL;
    }
    if (rawwriter_flush_bytes(self, max_bytes) < 0)
        return NULL;
    return PyLong_FromLongLong(self->held_bytes);
}

static PyObject *
rawwriter_stop_holding(RawWriter *self, PyObject *Py_UNUSED(ignored))
{
    self->hold_max = 0;
    if (self->held && rawwriter_flush_bytes(self, -1) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *
rawwriter_get_held_bytes(RawWriter *self, void *Py_UNUSED(closure))
{
    return PyLong_FromLongLong(self->held_bytes);
}

static PyObject *
rawwriter_get_held_reads(RawWriter *self, void *Py_UNUSED(closure))
{
    return PyLong_FromSsize_t(self->hq_len);
}

static PyObject *
rawwriter_get_last_burst_stamp(RawWriter *self, void *Py_UNUSED(closure))
{
    return PyLong_FromLongLong(self->last_burst_stamp);
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
    {"flush", (PyCFunction)(void (*)(void))rawwriter_flush, METH_FASTCALL,
     "flush(max_bytes=-1): held reads, oldest first, into the ring until max_bytes of them went (all: -1); "
     "returns the bytes still held."},
    {"stop_holding", (PyCFunction)rawwriter_stop_holding, METH_NOARGS,
     "Every held read into the ring, and each read from now on written at once."},
    {"release", (PyCFunction)rawwriter_release, METH_NOARGS,
     "Drop the buffer exports and any held read (unwritten); put_read() raises afterwards."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef rawwriter_getset[] = {
    {"written", (getter)rawwriter_get_written, NULL, "datagrams written into the ring", NULL},
    {"held_bytes", (getter)rawwriter_get_held_bytes, NULL, "bytes of the reads held, not yet in the ring", NULL},
    {"held_reads", (getter)rawwriter_get_held_reads, NULL, "reads held, not yet in the ring", NULL},
    {"last_burst_stamp", (getter)rawwriter_get_last_burst_stamp, NULL,
     "the stamp of the last read of at least hold_min_bytes (0: none yet)", NULL},
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
