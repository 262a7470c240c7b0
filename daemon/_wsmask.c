/*
 * daemon._wsmask: websocket text frames as a client (masked) or a server writes them, many payloads in
 * one call (daemon/wsbatch.py, whose Python frame_bytes is its meaning and its stand-in where this is
 * not built): the header, a fresh masking key per frame, the XOR and the join in one pass, ~0.07 us a
 * frame where the Python is ~0.35.  Moved unchanged from daemon/execution/_replyfast.c (the order
 * messages' reader), which it shared a file with but nothing else.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

/* ---- websocket frames (RFC 6455 5.2: FIN, opcode TEXT, no extension; a client's masked) ------ */

/* The masking key must be unpredictable to a web page's script (RFC 6455 10.3), not secret: a
 * xorshift64* seeded from getrandom at import, as aiohttp's writer takes its keys from a PRNG */
static uint64_t mask_state = 0x9E3779B97F4A7C15ULL;

static uint32_t next_key(void)
{
    uint64_t x = mask_state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    mask_state = x;
    return (uint32_t)((x * 0x2545F4914F6CDD1DULL) >> 32);
}

static const char *payload_of(PyObject *p, Py_ssize_t *n)
{
    if (PyBytes_Check(p)) {
        *n = PyBytes_GET_SIZE(p);
        return PyBytes_AS_STRING(p);
    }
    if (PyByteArray_Check(p)) {
        *n = PyByteArray_GET_SIZE(p);
        return PyByteArray_AS_STRING(p);
    }
    if (PyUnicode_Check(p))
        return PyUnicode_AsUTF8AndSize(p, n);
    PyErr_SetString(PyExc_TypeError, "a frame's payload is bytes, bytearray or str");
    return NULL;
}

/* ws_frames(payloads, masked) -> bytes: each payload (bytes, bytearray or str as UTF-8) as one
 * final text frame, in order, joined: what wsbatch.frame_bytes makes of each, in one allocation
 * and one pass (the header, a fresh key per frame, the XOR) */
static PyObject *ws_frames(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *seq, *out;
    PyObject **items;
    Py_ssize_t k, m, total = 0;
    int masked;
    char *w;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "ws_frames(payloads, masked)");
        return NULL;
    }
    masked = PyObject_IsTrue(args[1]);
    if (masked < 0)
        return NULL;
    seq = PySequence_Fast(args[0], "ws_frames: payloads must be a sequence");
    if (seq == NULL)
        return NULL;
    m = PySequence_Fast_GET_SIZE(seq);
    items = PySequence_Fast_ITEMS(seq);
    for (k = 0; k < m; k++) {
        Py_ssize_t n;
        if (payload_of(items[k], &n) == NULL) {
            Py_DECREF(seq);
            return NULL;
        }
        total += (n < 126 ? 2 : n < 65536 ? 4 : 10) + (masked ? 4 : 0) + n;
    }
    out = PyBytes_FromStringAndSize(NULL, total);
    if (out == NULL) {
        Py_DECREF(seq);
        return NULL;
    }
    w = PyBytes_AS_STRING(out);
    for (k = 0; k < m; k++) {
        Py_ssize_t n, i;
        const unsigned char *p = (const unsigned char *)payload_of(items[k], &n);
        unsigned char bit = masked ? 0x80 : 0, key[4];
        uint32_t kw;
        *w++ = (char)0x81;
        if (n < 126)
            *w++ = (char)(bit | n);
        else if (n < 65536) {
            *w++ = (char)(bit | 126);
            *w++ = (char)(n >> 8);
            *w++ = (char)n;
        } else {
            int b;
            *w++ = (char)(bit | 127);
            for (b = 7; b >= 0; b--)
                *w++ = (char)((uint64_t)n >> (8 * b));
        }
        if (!masked) {
            memcpy(w, p, n);
            w += n;
            continue;
        }
        kw = next_key();
        memcpy(key, &kw, 4);
        memcpy(w, key, 4);
        w += 4;
        for (i = 0; i + 4 <= n; i += 4) {  /* 4 bytes a step: the key's bytes line up again */
            uint32_t v;
            memcpy(&v, p + i, 4);
            v ^= kw;
            memcpy(w + i, &v, 4);
        }
        for (; i < n; i++)
            w[i] = (char)(p[i] ^ key[i & 3]);
        w += n;
    }
    Py_DECREF(seq);
    return out;
}

static PyMethodDef methods[] = {
    {"ws_frames", (PyCFunction)(void (*)(void))ws_frames, METH_FASTCALL, "Payloads as websocket text frames, joined."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef wsmask_module = {
    PyModuleDef_HEAD_INIT, "daemon._wsmask", "Websocket text frames, masked or not, many in one call (C).", -1,
    methods,
};

PyMODINIT_FUNC
PyInit__wsmask(void)
{
    uint64_t seed = 0;
    if (getrandom(&seed, sizeof seed, GRND_NONBLOCK) != (ssize_t)sizeof seed)
        seed = (uint64_t)time(NULL) * 0x9E3779B97F4A7C15ULL ^ (uint64_t)getpid() << 32 ^ (uint64_t)clock();
    if (seed)
        mask_state = seed;
    return PyModule_Create(&wsmask_module);
}
