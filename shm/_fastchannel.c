/*
 * shm._fastchannel: an order channel's end (shm/channel.py) in C: ChannelWriter.write_one,
 * ChannelReader.read_one and take, and pending(), the router's look at every bot's request channel
 * in one call.  Split from shm/_fastring.c (the market ring's C paths) along the seam between the
 * two kinds of shared memory; the buffer holding both share is shm/_fastbuf.h.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#include "_fastbuf.h"

/* -- an order channel's end: ChannelWriter.write_one, ChannelReader.read_one / take -------------------
 *
 * shm/channel.py's protocol for one record (or a reader's burst), word for word: a writer never passes
 * the read cursor by a capacity; the cursor stores are seq_cst, so the look at the peer's sleepers
 * word after them is ordered (what the Python methods' lock round trip buys on x86, here on any CPU).
 * A parked peer is woken, and an armed doorbell rung, by the Python callables given (the Numba
 * kernels own the futex and the arm).  In Python a record in or out cost ~0.3 us (the header words'
 * loads, the slice, the lock); the router writes one per order event and reads every request.
 */
typedef struct {
    PyObject_HEAD
    Py_buffer hdr, data;
    int held;
    int64_t *words;
    unsigned char *slots;
    int64_t capacity, mask;
    Py_ssize_t w_cursor, w_read, w_sleepers, w_bell;  /* w_bell < 0: no doorbell (a reader) */
    PyObject *wake;     /* () -> None: wake the parked peer */
    PyObject *ring;     /* () -> None: ring the doorbell (set by attach_bell), or None */
} ChannelEnd;

static void
chan_release_all(ChannelEnd *self)
{
    if (self->held) {
        PyBuffer_Release(&self->hdr);
        PyBuffer_Release(&self->data);
        self->held = 0;
    }
    self->words = NULL;
    self->slots = NULL;
    Py_CLEAR(self->wake);
    Py_CLEAR(self->ring);
}

static int
chan_init(ChannelEnd *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"hdr", "data", "w_cursor", "w_read", "w_sleepers", "w_bell", "wake", NULL};
    PyObject *hdr, *data, *wake;
    Py_ssize_t w_cursor, w_read, w_sleepers, w_bell;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOnnnnO", kwlist, &hdr, &data, &w_cursor, &w_read, &w_sleepers,
                                     &w_bell, &wake))
        return -1;
    if (!PyCallable_Check(wake)) {
        PyErr_SetString(PyExc_TypeError, "wake must be callable");
        return -1;
    }
    chan_release_all(self);
    if (hold_writable(hdr, data, &self->hdr, &self->data) < 0)
        return -1;
    self->held = 1;
    Py_ssize_t n = self->hdr.len / 8;
    int64_t cap = (int64_t)(self->data.len / 64);
    if (w_cursor < 0 || w_read < 0 || w_sleepers < 0 || w_cursor >= n || w_read >= n || w_sleepers >= n ||
        w_bell >= n || cap < 1 || (cap & (cap - 1)) != 0 || self->data.len != cap * 64) {
        chan_release_all(self);
        PyErr_SetString(PyExc_ValueError, "header word index out of range, or slots not a power of two of 64 bytes");
        return -1;
    }
    self->words = (int64_t *)self->hdr.buf;
    self->slots = (unsigned char *)self->data.buf;
    self->capacity = cap;
    self->mask = cap - 1;
    self->w_cursor = w_cursor;
    self->w_read = w_read;
    self->w_sleepers = w_sleepers;
    self->w_bell = w_bell;
    Py_INCREF(wake);
    self->wake = wake;
    return 0;
}

static void
chan_dealloc(ChannelEnd *self)
{
    chan_release_all(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int
chan_check_held(ChannelEnd *self)
{
    if (!self->held) {
        PyErr_SetString(PyExc_ValueError, "operation on a released channel end");
        return -1;
    }
    return 0;
}

/* After a cursor store (seq_cst): wake a parked peer; 0, or -1 with the callable's exception. */
static int
chan_wake_peer(ChannelEnd *self)
{
    if (__atomic_load_n(&self->words[self->w_sleepers], __ATOMIC_SEQ_CST)) {
        PyObject *r = PyObject_CallNoArgs(self->wake);
        if (r == NULL)
            return -1;
        Py_DECREF(r);
    }
    return 0;
}

static PyObject *
chan_write_one(ChannelEnd *self, PyObject *rec)
{
    if (chan_check_held(self) < 0)
        return NULL;
    Py_buffer b;
    if (PyObject_GetBuffer(rec, &b, PyBUF_SIMPLE) < 0)
        return NULL;
    if (b.len != 64) {
        PyBuffer_Release(&b);
        PyErr_Format(PyExc_ValueError, "a channel record is 64 bytes, not %zd", b.len);
        return NULL;
    }
    int64_t *w = self->words;
    int64_t cur = __atomic_load_n(&w[self->w_cursor], __ATOMIC_RELAXED);  /* its only writer: ours */
    /* acquire: the reader copied a slot out before it stored the read cursor past it */
    if (cur - __atomic_load_n(&w[self->w_read], __ATOMIC_ACQUIRE) >= self->capacity) {
        PyBuffer_Release(&b);
        Py_RETURN_FALSE;
    }
    memcpy(self->slots + ((cur & self->mask) << 6), b.buf, 64);
    PyBuffer_Release(&b);
    __atomic_store_n(&w[self->w_cursor], cur + 1, __ATOMIC_SEQ_CST);  /* publish, then look for sleepers */
    if (chan_wake_peer(self) < 0)
        return NULL;
    if (self->w_bell >= 0 && self->ring != NULL && __atomic_load_n(&w[self->w_bell], __ATOMIC_SEQ_CST)) {
        PyObject *r = PyObject_CallNoArgs(self->ring);
        if (r == NULL)
            return NULL;
        Py_DECREF(r);
    }
    Py_RETURN_TRUE;
}

/* Up to ``most`` records as one bytes object (b"" when none), their slots freed; with ``stop`` >= 0
   the burst ends at the first record whose kind (its first 32-bit word) is ``stop``: the router takes
   a bot's burst up to its in-flight window's room, and a cancel-all adds one to the window per open
   order, so what follows it must wait for the room to be counted again. */
static PyObject *
chan_take_n(ChannelEnd *self, int64_t most, int64_t stop, int none_if_empty)
{
    if (chan_check_held(self) < 0)
        return NULL;
    int64_t *w = self->words;
    int64_t rd = __atomic_load_n(&w[self->w_read], __ATOMIC_RELAXED);  /* its only writer: ours */
    int64_t n = __atomic_load_n(&w[self->w_cursor], __ATOMIC_ACQUIRE) - rd;  /* then the slots it covers */
    if (n > most)
        n = most;
    if (n > self->capacity)  /* a cursor the writer ran past the slots (its header is the bot's to write) */
        n = self->capacity;
    for (int64_t i = 0; stop >= 0 && i < n; i++) {
        uint32_t kind;
        memcpy(&kind, self->slots + (((rd + i) & self->mask) << 6), sizeof kind);
        if (kind == (uint64_t)stop)
            n = i + 1;
    }
    if (n <= 0) {
        if (none_if_empty)
            Py_RETURN_NONE;
        return PyBytes_FromStringAndSize(NULL, 0);
    }
    PyObject *out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(n << 6));
    if (out == NULL)
        return NULL;
    char *dst = PyBytes_AS_STRING(out);
    int64_t off = rd & self->mask;
    int64_t first = self->capacity - off < n ? self->capacity - off : n;  /* up to the end of the slots */
    memcpy(dst, self->slots + (off << 6), (size_t)(first << 6));
    if (n > first)
        memcpy(dst + (first << 6), self->slots, (size_t)((n - first) << 6));
    __atomic_store_n(&w[self->w_read], rd + n, __ATOMIC_SEQ_CST);  /* copied, then freed; then sleepers */
    if (chan_wake_peer(self) < 0) {
        Py_DECREF(out);
        return NULL;
    }
    return out;
}

static PyObject *
chan_take(ChannelEnd *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 1 || nargs > 2) {
        PyErr_SetString(PyExc_TypeError, "take(most, stop=-1)");
        return NULL;
    }
    long long most = PyLong_AsLongLong(args[0]);
    if (most == -1 && PyErr_Occurred())
        return NULL;
    long long stop = -1;
    if (nargs == 2 && (stop = PyLong_AsLongLong(args[1])) == -1 && PyErr_Occurred())
        return NULL;
    return chan_take_n(self, most, stop, 0);
}

static PyObject *
chan_read_one(ChannelEnd *self, PyObject *Py_UNUSED(ignored))
{
    return chan_take_n(self, 1, -1, 1);
}

static PyObject *
chan_release(ChannelEnd *self, PyObject *Py_UNUSED(ignored))
{
    chan_release_all(self);
    Py_RETURN_NONE;
}

static PyObject *
chan_get_ring(ChannelEnd *self, void *Py_UNUSED(closure))
{
    if (self->ring == NULL)
        Py_RETURN_NONE;
    Py_INCREF(self->ring);
    return self->ring;
}

static int
chan_set_ring(ChannelEnd *self, PyObject *value, void *Py_UNUSED(closure))
{
    if (value != NULL && value != Py_None && !PyCallable_Check(value)) {
        PyErr_SetString(PyExc_TypeError, "ring must be callable or None");
        return -1;
    }
    PyObject *old = self->ring;
    self->ring = value == Py_None ? NULL : value;
    Py_XINCREF(self->ring);
    Py_XDECREF(old);
    return 0;
}

static PyMethodDef chan_methods[] = {
    {"write_one", (PyCFunction)chan_write_one, METH_O, "write_one(rec64) -> False when full, else True (published)."},
    {"take", (PyCFunction)(void (*)(void))chan_take, METH_FASTCALL,
     "take(most, stop=-1) -> bytes of up to most records (ending at the first of kind stop), their slots freed."},
    {"read_one", (PyCFunction)chan_read_one, METH_NOARGS, "read_one() -> the next record's 64 bytes, or None."},
    {"release", (PyCFunction)chan_release, METH_NOARGS, "Drop the buffer exports; every later call raises."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef chan_getset[] = {
    {"ring", (getter)chan_get_ring, (setter)chan_set_ring, "() -> None: rings the doorbell, or None", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject ChannelEndType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "shm._fastchannel.ChannelEnd",
    .tp_basicsize = sizeof(ChannelEnd),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "One end of an order channel: a record in or out in one call (see shm/channel.py).",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)chan_init,
    .tp_dealloc = (destructor)chan_dealloc,
    .tp_methods = chan_methods,
    .tp_getset = chan_getset,
};

/* pending(ends): the indices of the reader ends (a tuple of ChannelEnd) whose channel holds records,
   as a tuple (empty: the shared empty tuple, nothing built).  The router's hot loop looks at every
   bot's channel after each message a session reads: in Python two header loads and a loop step per
   bot, ~90 ns each; here one call for them all.  A released end (a closed channel) holds none. */
static PyObject *
chan_pending(PyObject *Py_UNUSED(module), PyObject *ends)
{
    if (!PyTuple_Check(ends)) {
        PyErr_SetString(PyExc_TypeError, "pending() takes a tuple of ChannelEnd");
        return NULL;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(ends), found = 0;
    Py_ssize_t small[64], *idx = small;
    if (n > 64 && (idx = PyMem_Malloc((size_t)n * sizeof(Py_ssize_t))) == NULL)
        return PyErr_NoMemory();
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *o = PyTuple_GET_ITEM(ends, i);
        if (Py_TYPE(o) != &ChannelEndType) {
            if (idx != small)
                PyMem_Free(idx);
            PyErr_SetString(PyExc_TypeError, "pending() takes a tuple of ChannelEnd");
            return NULL;
        }
        ChannelEnd *e = (ChannelEnd *)o;
        if (e->held && __atomic_load_n(&e->words[e->w_cursor], __ATOMIC_ACQUIRE) >
                           __atomic_load_n(&e->words[e->w_read], __ATOMIC_RELAXED))
            idx[found++] = i;
    }
    PyObject *out = PyTuple_New(found);
    for (Py_ssize_t j = 0; out != NULL && j < found; j++) {
        PyObject *v = PyLong_FromSsize_t(idx[j]);
        if (v == NULL) {
            Py_CLEAR(out);
            break;
        }
        PyTuple_SET_ITEM(out, j, v);
    }
    if (idx != small)
        PyMem_Free(idx);
    return out;
}


static PyMethodDef fastchannel_functions[] = {
    {"pending", (PyCFunction)chan_pending, METH_O, "pending(ends) -> indices of the channels holding records."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef fastchannel_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_fastchannel",
    .m_doc = "An order channel's record in and out in C (see shm/channel.py).",
    .m_size = -1,
    .m_methods = fastchannel_functions,
};

PyMODINIT_FUNC
PyInit__fastchannel(void)
{
    if (PyType_Ready(&ChannelEndType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&fastchannel_module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&ChannelEndType);
    if (PyModule_AddObject(m, "ChannelEnd", (PyObject *)&ChannelEndType) < 0) {
        Py_DECREF(&ChannelEndType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
