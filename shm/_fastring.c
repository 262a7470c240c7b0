/*
 * shm._fastring: the market ring's record-at-a-time publish and read, each one C method call.  An
 * order channel's end is shm/_fastchannel.c; the raw-frame tap's writer, plugins/_rawtap.c.
 *
 * Why C: from plain Python, RingWriter.publish_one is interpreter-bound.  As a closure over
 * memoryviews it costs ~0.8-1 us a record on this 2-core VM (struct.pack_into alone ~0.25 us,
 * each header word ~0.05 us), which sits right at the 1 M records/s the Python API must sustain;
 * crossing into a Numba dispatcher costs more than that.  One METH_FASTCALL method does the same
 * work in well under 0.1 us and, through the __atomic builtins, orders its stores on any CPU
 * (the pure-Python closure is correct on x86 only).
 *
 * The protocol is shm.kernels.ring_publish_one's, word for word; this file knows no layout:
 * the word indices and flag bits come from shm/layout.py through the constructor.  Only the
 * common case runs here: when the record is not yet covered by the writer's INTENT (once per
 * stride of capacity/8 records) or readers are parked, it calls back into the Numba kernels,
 * which own claiming, gating and waking.
 *
 * Lifetime: a Publisher holds buffer exports of the mapping, so the mapping cannot be closed
 * under it; RingWriter.close() calls release() first, after which every call raises.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

typedef struct {
    PyObject_HEAD
    Py_buffer hdr;        /* the header words, int64 */
    Py_buffer data;       /* the slots, 64 bytes each */
    int held;             /* both buffers are held */
    int64_t *words;
    unsigned char *slots;
    int64_t mask;
    Py_ssize_t w_cursor, w_intent, w_sleepers, w_flags;
    int64_t asymmetric_flag;
    int64_t prefetch_ahead;
    PyObject *claiming_publish; /* (ev, exch_ts, local_ts, px, qty, order_id, ival, fval) -> cursor */
    PyObject *wake_readers;     /* () -> None */
} Publisher;

static const char *const FIELD_NAMES[8] = {"ev", "exch_ts", "local_ts", "px", "qty", "order_id", "ival", "fval"};

static void
publisher_release_all(Publisher *self)
{
    if (self->held) {
        PyBuffer_Release(&self->hdr);
        PyBuffer_Release(&self->data);
        self->held = 0;
    }
    self->words = NULL;
    self->slots = NULL;
    Py_CLEAR(self->claiming_publish);
    Py_CLEAR(self->wake_readers);
}

static int
publisher_init(Publisher *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"hdr", "data", "w_cursor", "w_intent", "w_sleepers", "w_flags", "asymmetric_flag",
                             "prefetch_ahead", "claiming_publish", "wake_readers", NULL};
    PyObject *hdr, *data, *claiming, *wake;
    Py_ssize_t w_cursor, w_intent, w_sleepers, w_flags;
    long long asymmetric_flag, prefetch_ahead;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOnnnnLLOO", kwlist, &hdr, &data, &w_cursor, &w_intent,
                                     &w_sleepers, &w_flags, &asymmetric_flag, &prefetch_ahead, &claiming, &wake))
        return -1;
    if (!PyCallable_Check(claiming) || !PyCallable_Check(wake)) {
        PyErr_SetString(PyExc_TypeError, "claiming_publish and wake_readers must be callables");
        return -1;
    }
    publisher_release_all(self);
    if (PyObject_GetBuffer(hdr, &self->hdr, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) < 0)
        return -1;
    if (PyObject_GetBuffer(data, &self->data, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) < 0) {
        PyBuffer_Release(&self->hdr);
        return -1;
    }
    self->held = 1;
    Py_ssize_t hdr_words = self->hdr.len / 8;
    Py_ssize_t slots = self->data.len / 64;
    if (w_cursor < 0 || w_intent < 0 || w_sleepers < 0 || w_flags < 0 || w_cursor >= hdr_words ||
        w_intent >= hdr_words || w_sleepers >= hdr_words || w_flags >= hdr_words ||
        ((uintptr_t)self->hdr.buf & 7) != 0 || ((uintptr_t)self->data.buf & 63) != 0 || slots < 2 ||
        (slots & (slots - 1)) != 0 || self->data.len != slots * 64) {
        publisher_release_all(self);
        PyErr_Format(PyExc_ValueError,
                     "not a ring mapping: %zd header words, %zd data bytes, word indices %zd/%zd/%zd/%zd",
                     hdr_words, self->data.len, w_cursor, w_intent, w_sleepers, w_flags);
        return -1;
    }
    self->words = (int64_t *)self->hdr.buf;
    self->slots = (unsigned char *)self->data.buf;
    self->mask = (int64_t)slots - 1;
    self->w_cursor = w_cursor;
    self->w_intent = w_intent;
    self->w_sleepers = w_sleepers;
    self->w_flags = w_flags;
    self->asymmetric_flag = asymmetric_flag;
    self->prefetch_ahead = prefetch_ahead;
    Py_INCREF(claiming);
    self->claiming_publish = claiming;
    Py_INCREF(wake);
    self->wake_readers = wake;
    return 0;
}

static void
publisher_dealloc(Publisher *self)
{
    publisher_release_all(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* Gather the 8 fields from positional and keyword arguments; the last three default to 0. */
static int
gather_fields(PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames, PyObject **fields)
{
    static PyObject *zero_int = NULL, *zero_float = NULL;
    if (zero_int == NULL) {
        zero_int = PyLong_FromLong(0);
        zero_float = PyFloat_FromDouble(0.0);
        if (zero_int == NULL || zero_float == NULL)
            return -1;
    }
    if (nargs > 8) {
        PyErr_Format(PyExc_TypeError, "publish_one() takes at most 8 arguments (%zd given)", nargs);
        return -1;
    }
    for (Py_ssize_t i = 0; i < 8; i++)
        fields[i] = i < nargs ? args[i] : NULL;
    if (kwnames != NULL) {
        Py_ssize_t nkw = PyTuple_GET_SIZE(kwnames);
        for (Py_ssize_t k = 0; k < nkw; k++) {
            PyObject *key = PyTuple_GET_ITEM(kwnames, k);
            Py_ssize_t i = 0;
            for (; i < 8; i++)
                if (PyUnicode_CompareWithASCIIString(key, FIELD_NAMES[i]) == 0)
                    break;
            if (i == 8) {
                PyErr_Format(PyExc_TypeError, "publish_one() got an unexpected keyword argument '%U'", key);
                return -1;
            }
            if (fields[i] != NULL) {
                PyErr_Format(PyExc_TypeError, "publish_one() got multiple values for argument '%s'", FIELD_NAMES[i]);
                return -1;
            }
            fields[i] = args[nargs + k];
        }
    }
    for (Py_ssize_t i = 0; i < 5; i++) {
        if (fields[i] == NULL) {
            PyErr_Format(PyExc_TypeError, "publish_one() missing required argument '%s'", FIELD_NAMES[i]);
            return -1;
        }
    }
    if (fields[5] == NULL)
        fields[5] = zero_int;
    if (fields[6] == NULL)
        fields[6] = zero_int;
    if (fields[7] == NULL)
        fields[7] = zero_float;
    return 0;
}

/* The record's 8 words in event_dtype's layout ("<QqqddQqd"), with struct.pack_into's range checks. */
static int
encode_record(PyObject **fields, int64_t *out)
{
    unsigned long long ev = PyLong_AsUnsignedLongLong(fields[0]);
    if (ev == (unsigned long long)-1 && PyErr_Occurred())
        return -1;
    long long exch_ts = PyLong_AsLongLong(fields[1]);
    if (exch_ts == -1 && PyErr_Occurred())
        return -1;
    long long local_ts = PyLong_AsLongLong(fields[2]);
    if (local_ts == -1 && PyErr_Occurred())
        return -1;
    double px = PyFloat_AsDouble(fields[3]);
    if (px == -1.0 && PyErr_Occurred())
        return -1;
    double qty = PyFloat_AsDouble(fields[4]);
    if (qty == -1.0 && PyErr_Occurred())
        return -1;
    unsigned long long order_id = PyLong_AsUnsignedLongLong(fields[5]);
    if (order_id == (unsigned long long)-1 && PyErr_Occurred())
        return -1;
    long long ival = PyLong_AsLongLong(fields[6]);
    if (ival == -1 && PyErr_Occurred())
        return -1;
    double fval = PyFloat_AsDouble(fields[7]);
    if (fval == -1.0 && PyErr_Occurred())
        return -1;
    out[0] = (int64_t)ev;
    out[1] = exch_ts;
    out[2] = local_ts;
    memcpy(&out[3], &px, 8);
    memcpy(&out[4], &qty, 8);
    out[5] = (int64_t)order_id;
    out[6] = ival;
    memcpy(&out[7], &fval, 8);
    return 0;
}

/* The slot is not claimed yet: the kernel claims the next stride (waiting for gated readers if
   it must) and publishes the record itself.  It gets the encoded words as int64 and float64
   values, the types it is compiled for (an unsigned field over 2**63 would not fit its int64). */
static PyObject *
claim_and_publish(Publisher *self, const int64_t *rec)
{
    PyObject *values[8] = {NULL};
    PyObject *result = NULL;
    for (int i = 0; i < 8; i++) {
        if (i == 3 || i == 4 || i == 7) {
            double d;
            memcpy(&d, &rec[i], 8);
            values[i] = PyFloat_FromDouble(d);
        } else {
            values[i] = PyLong_FromLongLong(rec[i]);
        }
        if (values[i] == NULL)
            goto done;
    }
    result = PyObject_Vectorcall(self->claiming_publish, values, 8, NULL);
done:
    for (int i = 0; i < 8; i++)
        Py_XDECREF(values[i]);
    return result;
}

static PyObject *
publisher_publish_one(Publisher *self, PyObject *const *args, Py_ssize_t nargsf, PyObject *kwnames)
{
    PyObject *fields[8];
    int64_t rec[8];
    if (!self->held) {
        PyErr_SetString(PyExc_ValueError, "publish_one() on a closed ring writer");
        return NULL;
    }
    if (gather_fields(args, PyVectorcall_NARGS(nargsf), kwnames, fields) < 0)
        return NULL;
    if (encode_record(fields, rec) < 0)
        return NULL;  /* as struct.pack_into: nothing is written for a bad field */

    int64_t *w = self->words;
    /* only this process writes the cursor: a relaxed load sees our own last store */
    int64_t cur = __atomic_load_n(&w[self->w_cursor], __ATOMIC_RELAXED);
    if (cur + 1 > __atomic_load_n(&w[self->w_intent], __ATOMIC_RELAXED))
        return claim_and_publish(self, rec);
    __builtin_prefetch(self->slots + (((cur + 1 + self->prefetch_ahead) & self->mask) << 6), 1, 3);
    memcpy(self->slots + ((cur & self->mask) << 6), rec, 64);
    if (__atomic_load_n(&w[self->w_flags], __ATOMIC_RELAXED) & self->asymmetric_flag) {
        /* a parking reader's membarrier orders this store before its look at the cursor */
        __atomic_store_n(&w[self->w_cursor], cur + 1, __ATOMIC_RELEASE);
    } else {
        /* no membarrier: the cursor store must be visible before we read the sleepers word */
        __atomic_store_n(&w[self->w_cursor], cur + 1, __ATOMIC_SEQ_CST);
    }
    if (__atomic_load_n(&w[self->w_sleepers], __ATOMIC_RELAXED) > 0) {
        PyObject *r = PyObject_CallNoArgs(self->wake_readers);
        if (r == NULL)
            return NULL;
        Py_DECREF(r);
    }
    return PyLong_FromLongLong(cur + 1);
}

static PyObject *
publisher_release(Publisher *self, PyObject *Py_UNUSED(ignored))
{
    publisher_release_all(self);
    Py_RETURN_NONE;
}

static PyMethodDef publisher_methods[] = {
    {"publish_one", (PyCFunction)(void (*)(void))publisher_publish_one, METH_FASTCALL | METH_KEYWORDS,
     "publish_one(ev, exch_ts, local_ts, px, qty, order_id=0, ival=0, fval=0.0) -> new cursor"},
    {"release", (PyCFunction)publisher_release, METH_NOARGS,
     "Let go of the mapping and the callbacks; every later publish_one() raises ValueError."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject PublisherType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "shm._fastring.Publisher",
    .tp_basicsize = sizeof(Publisher),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Record-at-a-time publisher over a market ring's mapping (see shm/ring.py).",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)publisher_init,
    .tp_dealloc = (destructor)publisher_dealloc,
    .tp_methods = publisher_methods,
};

/* -- the reader: RingReader.read_one ------------------------------------------------------------ */

typedef struct {
    PyObject_HEAD
    Py_buffer hdr, data, state, position;
    int held;
    int64_t *words;       /* header */
    unsigned char *slots;
    int64_t *st;          /* this reader's state words */
    int64_t *pos;         /* where its position is published: its header slot, or a private word */
    int64_t capacity, mask;
    Py_ssize_t w_cursor, w_intent, s_next, s_gap, s_lost_total, s_gaps;
    int64_t known_cursor; /* the last cursor seen: records below it need no new look at the line */
} Reader;

static void
reader_release_all(Reader *self)
{
    if (self->held) {
        PyBuffer_Release(&self->hdr);
        PyBuffer_Release(&self->data);
        PyBuffer_Release(&self->state);
        PyBuffer_Release(&self->position);
        self->held = 0;
    }
}

static int
reader_init(Reader *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"hdr", "data", "state", "position", "w_cursor", "w_intent", "s_next", "s_gap",
                             "s_lost_total", "s_gaps", NULL};
    PyObject *hdr, *data, *state, *position;
    Py_ssize_t w_cursor, w_intent, s_next, s_gap, s_lost_total, s_gaps;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOOOnnnnnn", kwlist, &hdr, &data, &state, &position, &w_cursor,
                                     &w_intent, &s_next, &s_gap, &s_lost_total, &s_gaps))
        return -1;
    reader_release_all(self);
    Py_buffer *views[4] = {&self->hdr, &self->data, &self->state, &self->position};
    PyObject *objs[4] = {hdr, data, state, position};
    for (int i = 0; i < 4; i++) {
        if (PyObject_GetBuffer(objs[i], views[i], PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) < 0) {
            for (int j = 0; j < i; j++)
                PyBuffer_Release(views[j]);
            return -1;
        }
    }
    self->held = 1;
    Py_ssize_t hdr_words = self->hdr.len / 8, state_words = self->state.len / 8;
    Py_ssize_t slots = self->data.len / 64;
    if (w_cursor < 0 || w_intent < 0 || w_cursor >= hdr_words || w_intent >= hdr_words || s_next < 0 ||
        s_gap < 0 || s_lost_total < 0 || s_gaps < 0 || s_next >= state_words || s_gap >= state_words ||
        s_lost_total >= state_words || s_gaps >= state_words || self->position.len < 8 ||
        ((uintptr_t)self->hdr.buf & 7) != 0 || ((uintptr_t)self->state.buf & 7) != 0 ||
        ((uintptr_t)self->position.buf & 7) != 0 || slots < 2 || (slots & (slots - 1)) != 0 ||
        self->data.len != slots * 64) {
        reader_release_all(self);
        PyErr_Format(PyExc_ValueError, "not a ring mapping and reader state: %zd header words, %zd data bytes, "
                     "%zd state words", hdr_words, self->data.len, state_words);
        return -1;
    }
    self->words = (int64_t *)self->hdr.buf;
    self->slots = (unsigned char *)self->data.buf;
    self->st = (int64_t *)self->state.buf;
    self->pos = (int64_t *)self->position.buf;
    self->capacity = (int64_t)slots;
    self->mask = (int64_t)slots - 1;
    self->w_cursor = w_cursor;
    self->w_intent = w_intent;
    self->s_next = s_next;
    self->s_gap = s_gap;
    self->s_lost_total = s_lost_total;
    self->s_gaps = s_gaps;
    self->known_cursor = 0;
    return 0;
}

static void
reader_dealloc(Reader *self)
{
    reader_release_all(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* The 8 fields of a record as event_dtype's Python values: (ev, exch_ts, local_ts, px, qty,
   order_id, ival, fval), as struct.unpack_from("<QqqddQqd") gives them. */
static PyObject *
record_tuple(const int64_t *w)
{
    double px, qty, fval;
    memcpy(&px, &w[3], 8);
    memcpy(&qty, &w[4], 8);
    memcpy(&fval, &w[7], 8);
    PyObject *t = PyTuple_New(8);
    if (t == NULL)
        return NULL;
    PyObject *items[8] = {
        PyLong_FromUnsignedLongLong((unsigned long long)w[0]), PyLong_FromLongLong(w[1]),
        PyLong_FromLongLong(w[2]), PyFloat_FromDouble(px), PyFloat_FromDouble(qty),
        PyLong_FromUnsignedLongLong((unsigned long long)w[5]), PyLong_FromLongLong(w[6]), PyFloat_FromDouble(fval),
    };
    for (int i = 0; i < 8; i++) {
        if (items[i] == NULL) {
            for (int j = 0; j < 8; j++)
                Py_XDECREF(items[j]);
            Py_DECREF(t);
            return NULL;
        }
        PyTuple_SET_ITEM(t, i, items[i]);
    }
    return t;
}

/* Advance past ``next`` records, publishing the position (a gated writer reads it) and the gap. */
static void
reader_advance(Reader *self, int64_t next, int64_t lost)
{
    self->st[self->s_next] = next;
    __atomic_store_n(self->pos, next, __ATOMIC_RELEASE);
    self->st[self->s_gap] = lost;
    if (lost > 0) {
        self->st[self->s_lost_total] += lost;
        self->st[self->s_gaps] += 1;
    }
}

static PyObject *
reader_read_one(Reader *self, PyObject *Py_UNUSED(ignored))
{
    if (!self->held) {
        PyErr_SetString(PyExc_ValueError, "read_one() on a closed ring reader");
        return NULL;
    }
    int64_t *w = self->words;
    int64_t first = self->st[self->s_next];
    if (first >= self->known_cursor) {
        /* acquire: the record's words are loaded after the cursor that covers them */
        self->known_cursor = __atomic_load_n(&w[self->w_cursor], __ATOMIC_ACQUIRE);
        if (first >= self->known_cursor) {
            self->st[self->s_gap] = 0;
            Py_RETURN_NONE;
        }
    }
    int64_t rec[8];
    memcpy(rec, self->slots + ((first & self->mask) << 6), 64);
    /* the copy completes before we look at how far the writer has claimed since */
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    int64_t intact = __atomic_load_n(&w[self->w_intent], __ATOMIC_RELAXED) - self->capacity;
    if (intact <= first) {
        reader_advance(self, first + 1, 0);
        return record_tuple(rec);
    }
    /* Lapped: the writer has claimed this slot (or more) for its next lap, so the copy may be torn.
       Skip to the oldest intact record, count what was lost, return that record (or None). */
    int64_t cursor = __atomic_load_n(&w[self->w_cursor], __ATOMIC_ACQUIRE);
    self->known_cursor = cursor;
    int64_t start = intact;
    if (start < cursor) {
        memcpy(rec, self->slots + ((start & self->mask) << 6), 64);
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        int64_t intact_now = __atomic_load_n(&w[self->w_intent], __ATOMIC_RELAXED) - self->capacity;
        if (intact_now <= start) {
            reader_advance(self, start + 1, start - first);
            return record_tuple(rec);
        }
        start = intact_now;
    }
    reader_advance(self, start, start - first);
    Py_RETURN_NONE;
}

static PyObject *
reader_release(Reader *self, PyObject *Py_UNUSED(ignored))
{
    reader_release_all(self);
    Py_RETURN_NONE;
}

static PyMethodDef reader_methods[] = {
    {"read_one", (PyCFunction)reader_read_one, METH_NOARGS,
     "read_one() -> the next record as a tuple of its 8 fields, or None; sets the state's gap word"},
    {"release", (PyCFunction)reader_release, METH_NOARGS,
     "Let go of the mapping and the state; every later read_one() raises ValueError."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject ReaderType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "shm._fastring.Reader",
    .tp_basicsize = sizeof(Reader),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Record-at-a-time reader over a market ring's mapping (see shm/ring.py).",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)reader_init,
    .tp_dealloc = (destructor)reader_dealloc,
    .tp_methods = reader_methods,
};

static struct PyModuleDef fastring_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_fastring",
    .m_doc = "The market ring's record-at-a-time publish and read in C (see shm/ring.py).",
    .m_size = -1,
};

PyMODINIT_FUNC
PyInit__fastring(void)
{
    if (PyType_Ready(&PublisherType) < 0 || PyType_Ready(&ReaderType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&fastring_module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&PublisherType);
    if (PyModule_AddObject(m, "Publisher", (PyObject *)&PublisherType) < 0) {
        Py_DECREF(&PublisherType);
        Py_DECREF(m);
        return NULL;
    }
    Py_INCREF(&ReaderType);
    if (PyModule_AddObject(m, "Reader", (PyObject *)&ReaderType) < 0) {
        Py_DECREF(&ReaderType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
