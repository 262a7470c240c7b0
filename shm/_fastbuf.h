/*
 * shm/_fastbuf.h: what the C fast paths over shared memory share (shm/_fastchannel.c, plugins/_rawtap.c):
 * holding the exports of a mapping's header and data buffers, so a mapping cannot be closed under a C object.
 */
#ifndef HFTD_FASTBUF_H
#define HFTD_FASTBUF_H
#include <Python.h>

/* Writable, contiguous exports of both objects, or none of them (-1, an exception set). */
static inline int
hold_writable(PyObject *a, PyObject *b, Py_buffer *va, Py_buffer *vb)
{
    if (PyObject_GetBuffer(a, va, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) < 0)
        return -1;
    if (PyObject_GetBuffer(b, vb, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) < 0) {
        PyBuffer_Release(va);
        return -1;
    }
    return 0;
}

#endif
