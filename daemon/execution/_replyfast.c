/*
 * daemon.execution._replyfast: the Binance messages of every order (the WS API's reply to
 * order.place / order.cancel, the user stream's ORDER_TRADE_UPDATE) read into the fields the
 * tracker needs, one C call per message; and on the emulator's side, the request itself.
 *
 * Why C: two replies and two events per order, each an orjson decode of the whole text (20-40
 * keys, most never read) and then a dozen dict lookups and float()/int()/str() calls: ~2.8 us a
 * reply and ~2 us an event in Python, where a scan of the same text here is a fraction of that.
 *
 * Meaning: daemon/execution/replyparse.py holds the Python reference (reply_fields_py,
 * order_event_fields_py: orjson, then the same type rules); a test drives both on the emulator's
 * and the venue's messages and on broken ones.  Anything outside the plain shapes (a string with
 * an escape, a non-ASCII text, a value of another type, a field missing, text that is not JSON,
 * a non-finite number) gives None here and the session takes its Python path, which handles
 * everything.  The scan validates the whole message as JSON (RFC 8259 grammar), so None is also
 * the answer where orjson would refuse the text, but for one case: a number beyond a double's
 * range (1e999) in a member this does not read is skipped here, refused by orjson (tested).
 *
 * (Order frames as websocket client frames on the wire: daemon/_wsmask.c.)
 *
 * Numbers become Python values as Python's own conversions make them: a decimal (a JSON string
 * of digits, sign, point and exponent, or a JSON number) through PyOS_string_to_double, which is
 * what float(text) calls; integers through the exact digits.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#define MAX_DEPTH 64

enum { K_NONE = 0, K_STR, K_INT, K_NUM, K_TRUE, K_FALSE, K_NULL, K_OBJ, K_ARR };

typedef struct Field {
    const char *name;
    Py_ssize_t len;
    int kind;
    Py_ssize_t vs, ve; /* the value's text (a string's without its quotes) */
    struct Field *sub;  /* an object value's own wanted members, read in the same pass */
    int nsub;
    uint64_t w;         /* the name's first 8 bytes (zero past its end): WANT's NAME_WORD */
} Field;

/* up to 8 bytes at p as one little-endian word, zero past m: a key compared to a field's name in
 * one comparison (a byte loop per wanted field per key was a fifth of a scan: an event's object
 * has ~30 keys and 13 wanted one-letter names) */
static inline uint64_t word_of(const char *p, Py_ssize_t m, Py_ssize_t avail)
{
    uint64_t w = 0;
    if (avail >= 8) { /* one load (a key is followed by at least its quote and colon) */
        memcpy(&w, p, 8);
        return m >= 8 ? w : w & ((1ULL << (8 * m)) - 1);
    }
    memcpy(&w, p, (size_t)(m < 8 ? m : 8));
    return w;
}

/* a wanted member by its name (a string literal): its length and word made by the compiler */
#define NAME_BYTE(lit, k) ((uint64_t)(unsigned char)((k) < sizeof(lit) - 1 ? (lit)[(k) < sizeof(lit) ? (k) : 0] : 0) << (8 * (k)))
#define NAME_WORD(lit) (NAME_BYTE(lit, 0) | NAME_BYTE(lit, 1) | NAME_BYTE(lit, 2) | NAME_BYTE(lit, 3) | \
                        NAME_BYTE(lit, 4) | NAME_BYTE(lit, 5) | NAME_BYTE(lit, 6) | NAME_BYTE(lit, 7))
#define WANT(lit) {lit, sizeof(lit) - 1, 0, 0, 0, NULL, 0, NAME_WORD(lit)}
#define WANT_OBJ(lit, sub, nsub) {lit, sizeof(lit) - 1, 0, 0, 0, sub, nsub, NAME_WORD(lit)}

static Py_ssize_t skip_ws(const char *s, Py_ssize_t n, Py_ssize_t i)
{
    while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r'))
        i++;
    return i;
}

/* the bytes a string's scan stops at: the quote, the backslash, the control characters */
static unsigned char STOP[256];

/* i at the opening quote; the index after the closing quote, or -1: a control character (not
 * JSON) or an escape (the venue writes none in these messages: such a text is left to Python) */
static Py_ssize_t skip_string(const char *s, Py_ssize_t n, Py_ssize_t i)
{
    /* (8 bytes a step by word arithmetic was slower here: the strings of these messages are short) */
    i++;
    for (; i < n; i++)
        if (STOP[(unsigned char)s[i]])
            return s[i] == '"' ? i + 1 : -1;
    return -1;
}

/* JSON's number grammar; the index after it or -1; *integral when it has no fraction or exponent */
static Py_ssize_t skip_number(const char *s, Py_ssize_t n, Py_ssize_t i, int *integral)
{
    *integral = 1;
    if (i < n && s[i] == '-')
        i++;
    if (i >= n)
        return -1;
    if (s[i] == '0')
        i++;
    else if (s[i] >= '1' && s[i] <= '9')
        while (i < n && s[i] >= '0' && s[i] <= '9')
            i++;
    else
        return -1;
    if (i < n && s[i] == '.') {
        *integral = 0;
        i++;
        if (i >= n || s[i] < '0' || s[i] > '9')
            return -1;
        while (i < n && s[i] >= '0' && s[i] <= '9')
            i++;
    }
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        *integral = 0;
        i++;
        if (i < n && (s[i] == '+' || s[i] == '-'))
            i++;
        if (i >= n || s[i] < '0' || s[i] > '9')
            return -1;
        while (i < n && s[i] >= '0' && s[i] <= '9')
            i++;
    }
    return i;
}

static Py_ssize_t scan_object(const char *s, Py_ssize_t n, Py_ssize_t i, Field *f, int nf, int depth);

/* any value at i (after whitespace); the index after it or -1; its kind and text span */
static Py_ssize_t skip_value(const char *s, Py_ssize_t n, Py_ssize_t i, int depth, int *kind, Py_ssize_t *vs,
                             Py_ssize_t *ve)
{
    Py_ssize_t e;
    int integral;
    if (i >= n || depth > MAX_DEPTH)
        return -1;
    *vs = i;
    switch (s[i]) {
    case '"':
        e = skip_string(s, n, i);
        if (e < 0)
            return -1;
        *kind = K_STR;
        *vs = i + 1;
        *ve = e - 1;
        return e;
    case '{':
        e = scan_object(s, n, i, NULL, 0, depth + 1);
        *kind = K_OBJ;
        *ve = e;
        return e;
    case '[':
        i = skip_ws(s, n, i + 1);
        if (i < n && s[i] == ']') {
            *kind = K_ARR;
            *ve = i + 1;
            return i + 1;
        }
        for (;;) {
            int k;
            Py_ssize_t a, b;
            i = skip_value(s, n, skip_ws(s, n, i), depth + 1, &k, &a, &b);
            if (i < 0)
                return -1;
            i = skip_ws(s, n, i);
            if (i >= n)
                return -1;
            if (s[i] == ']') {
                *kind = K_ARR;
                *ve = i + 1;
                return i + 1;
            }
            if (s[i] != ',')
                return -1;
            i++;
        }
    case 't':
        if (n - i >= 4 && memcmp(s + i, "true", 4) == 0) {
            *kind = K_TRUE;
            *ve = i + 4;
            return i + 4;
        }
        return -1;
    case 'f':
        if (n - i >= 5 && memcmp(s + i, "false", 5) == 0) {
            *kind = K_FALSE;
            *ve = i + 5;
            return i + 5;
        }
        return -1;
    case 'n':
        if (n - i >= 4 && memcmp(s + i, "null", 4) == 0) {
            *kind = K_NULL;
            *ve = i + 4;
            return i + 4;
        }
        return -1;
    default:
        e = skip_number(s, n, i, &integral);
        if (e < 0)
            return -1;
        *kind = integral ? K_INT : K_NUM;
        *ve = e;
        return e;
    }
}

static void forget(Field *f, int nf)
{
    int j;
    for (j = 0; j < nf; j++) {
        f[j].kind = K_NONE;
        if (f[j].sub != NULL)
            forget(f[j].sub, f[j].nsub);
    }
}

static int same(const char *a, const char *b, Py_ssize_t m)
{
    Py_ssize_t k;
    for (k = 0; k < m; k++)
        if (a[k] != b[k])
            return 0;
    return 1;
}

/* i at '{': the index after its '}' or -1; the members named in f recorded (the last of a
 * repeated key, as a dict keeps it) */
static Py_ssize_t scan_object(const char *s, Py_ssize_t n, Py_ssize_t i, Field *f, int nf, int depth)
{
    if (depth > MAX_DEPTH)
        return -1;
    i = skip_ws(s, n, i + 1);
    if (i < n && s[i] == '}')
        return i + 1;
    for (;;) {
        int kind, j;
        Py_ssize_t ks, ke, vs, ve;
        if (i >= n || s[i] != '"')
            return -1;
        ks = i + 1;
        i = skip_string(s, n, i);
        if (i < 0)
            return -1;
        ke = i - 1;
        i = skip_ws(s, n, i);
        if (i >= n || s[i] != ':')
            return -1;
        i = skip_ws(s, n, i + 1);
        if (nf) {
            Py_ssize_t m = ke - ks;
            uint64_t kw = word_of(s + ks, m, n - ks);
            for (j = 0; j < nf; j++)
                if (f[j].w == kw && f[j].len == m && (m <= 8 || same(f[j].name + 8, s + ks + 8, m - 8)))
                    break;
        } else {
            j = 0;
        }
        if (j < nf && f[j].sub != NULL && i < n && s[i] == '{') {
            forget(f[j].sub, f[j].nsub); /* a repeated key: a dict keeps the last object alone */
            vs = i;
            i = ve = scan_object(s, n, i, f[j].sub, f[j].nsub, depth + 1);
            kind = K_OBJ;
        } else {
            i = skip_value(s, n, i, depth, &kind, &vs, &ve);
        }
        if (i < 0)
            return -1;
        if (j < nf) {
            f[j].kind = kind;
            f[j].vs = vs;
            f[j].ve = ve;
        }
        i = skip_ws(s, n, i);
        if (i >= n)
            return -1;
        if (s[i] == '}')
            return i + 1;
        if (s[i] != ',')
            return -1;
        i = skip_ws(s, n, i + 1);
    }
}

/* a whole message: one object and nothing after it but whitespace */
static int scan_message(const char *s, Py_ssize_t n, Field *f, int nf)
{
    Py_ssize_t i = skip_ws(s, n, 0);
    if (i >= n || s[i] != '{')
        return -1;
    i = scan_object(s, n, i, f, nf, 0);
    if (i < 0)
        return -1;
    return skip_ws(s, n, i) == n ? 0 : -1;
}

static int is_text(const Field *f, const char *s, const char *lit)
{
    size_t m = strlen(lit);
    return f->kind == K_STR && (size_t)(f->ve - f->vs) == m && memcmp(s + f->vs, lit, m) == 0;
}

static const double POW10[23] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
                                  1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/* -?digits[.digits] with a mantissa below 2**53 and at most 22 decimals: mantissa / 10**k, both exact,
 * one correctly rounded division: the correctly rounded value of the decimal, as float(text) gives
 * it (PyOS_string_to_double's dtoa costs ~0.1 us a number, seven numbers an event); 0 when taken */
static int plain_decimal(const char *t, Py_ssize_t m, double *out)
{
    Py_ssize_t i = 0;
    int neg = 0, digits = 0, frac = -1;
    unsigned long long mant = 0;
    if (t[0] == '-') {
        neg = 1;
        i = 1;
    }
    for (; i < m; i++) {
        char c = t[i];
        if (c >= '0' && c <= '9') {
            mant = mant * 10 + (unsigned long long)(c - '0');
            if (++digits > 18)
                return -1;
            if (frac >= 0)
                frac++;
        } else if (c == '.' && frac < 0) {
            frac = 0;
        } else {
            return -1;
        }
    }
    if (digits == 0 || mant >= (1ULL << 53) || frac > 22)
        return -1;
    *out = frac > 0 ? (double)mant / POW10[frac] : (double)mant;
    if (neg)
        *out = -*out;
    return 0;
}

/* float(value) for a JSON number or a string of a decimal; 0 on success */
static int to_double(const Field *f, const char *s, double *out)
{
    char buf[64];
    char *end;
    Py_ssize_t m = f->ve - f->vs, k;
    double v;
    if (f->kind != K_STR && f->kind != K_INT && f->kind != K_NUM)
        return -1;
    if (m <= 0 || m >= (Py_ssize_t)sizeof(buf))
        return -1;
    for (k = 0; k < m; k++) {
        char c = s[f->vs + k];
        if (!((c >= '0' && c <= '9') || c == '.' || c == '-' || c == '+' || c == 'e' || c == 'E'))
            return -1;
    }
    if (plain_decimal(s + f->vs, m, out) == 0)
        return 0;
    memcpy(buf, s + f->vs, (size_t)m);
    buf[m] = 0;
    v = PyOS_string_to_double(buf, &end, NULL);
    if (v == -1.0 && PyErr_Occurred()) {
        PyErr_Clear();
        return -1;
    }
    if (end != buf + m || !isfinite(v))
        return -1;
    *out = v;
    return 0;
}

/* a JSON integer's value (up to 18 digits: every id and millisecond time); 0 on success */
static int to_ll(const Field *f, const char *s, long long *out)
{
    Py_ssize_t i = f->vs, e = f->ve;
    int neg = 0;
    long long v = 0;
    if (f->kind != K_INT)
        return -1;
    if (s[i] == '-') {
        neg = 1;
        i++;
    }
    if (e - i > 18)
        return -1;
    for (; i < e; i++)
        v = v * 10 + (s[i] - '0');
    *out = neg ? -v : v;
    return 0;
}

/* str(value) of an id: a plain string, or a JSON integer of up to 18 digits as str(int) writes it */
static PyObject *id_text(const Field *f, const char *s)
{
    Py_ssize_t m = f->ve - f->vs;
    if (f->kind == K_STR)
        return PyUnicode_FromStringAndSize(s + f->vs, m);
    if (f->kind != K_INT || m - (s[f->vs] == '-') > 18)
        return NULL;
    if (m == 2 && s[f->vs] == '-' && s[f->vs + 1] == '0') /* "-0" */
        return PyUnicode_FromStringAndSize("0", 1);
    return PyUnicode_FromStringAndSize(s + f->vs, m);
}

static PyObject *text(const Field *f, const char *s)
{
    return PyUnicode_FromStringAndSize(s + f->vs, f->ve - f->vs);
}

/* a tuple whose items were made in place: NULL (the error raised) if any allocation failed */
static PyObject *complete(PyObject *t)
{
    Py_ssize_t k;
    for (k = 0; k < PyTuple_GET_SIZE(t); k++) {
        if (PyTuple_GET_ITEM(t, k) == NULL) {
            Py_DECREF(t);
            return NULL;
        }
    }
    return t;
}

static const char *ascii_text(PyObject *arg, Py_ssize_t *n)
{
    if (!PyUnicode_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "a str is expected");
        return NULL;
    }
    if (PyUnicode_READY(arg) < 0)
        return NULL;
    if (!PyUnicode_IS_ASCII(arg)) {
        *n = -1;
        return "";
    }
    *n = PyUnicode_GET_LENGTH(arg);
    return (const char *)PyUnicode_DATA(arg);
}

enum { R_ID, R_STATUS, R_RESULT, R_LIMITS };
enum { O_CID, O_STATUS, O_OID, O_PRICE, O_QTY, O_CUM, O_AVG, O_TIME };

/* binance_reply(text) -> (id, has_rate_limits, status, clientOrderId, orderId, price, origQty,
 * executedQty, avgPrice, updateTime ms) for {"id":<int>,"status":200,"result":{<order>},...}; else None */
static PyObject *binance_reply(PyObject *self, PyObject *arg)
{
    Py_ssize_t n;
    const char *s = ascii_text(arg, &n);
    Field o[8] = {WANT("clientOrderId"), WANT("status"), WANT("orderId"),     WANT("price"),
                  WANT("origQty"),       WANT("executedQty"), WANT("avgPrice"), WANT("updateTime")};
    Field top[4] = {WANT("id"), WANT("status"), WANT_OBJ("result", o, 8), WANT("rateLimits")};
    double px, qty, cum, avg;
    long long rid, ts;
    PyObject *oid;
    int j;
    if (s == NULL)
        return NULL;
    if (n < 0 || scan_message(s, n, top, 4) < 0)
        Py_RETURN_NONE;
    if (to_ll(&top[R_ID], s, &rid) < 0 || rid < 0)
        Py_RETURN_NONE;
    if (top[R_STATUS].kind != K_INT || top[R_STATUS].ve - top[R_STATUS].vs != 3 ||
        memcmp(s + top[R_STATUS].vs, "200", 3) != 0 || top[R_RESULT].kind != K_OBJ)
        Py_RETURN_NONE;
    for (j = 0; j < 8; j++)
        if (o[j].kind == K_NONE)
            Py_RETURN_NONE;
    if (o[O_CID].kind != K_STR || o[O_STATUS].kind != K_STR || to_double(&o[O_PRICE], s, &px) < 0 ||
        to_double(&o[O_QTY], s, &qty) < 0 || to_double(&o[O_CUM], s, &cum) < 0 || to_double(&o[O_AVG], s, &avg) < 0 ||
        to_ll(&o[O_TIME], s, &ts) < 0)
        Py_RETURN_NONE;
    oid = id_text(&o[O_OID], s);
    if (oid == NULL) {
        if (PyErr_Occurred())
            return NULL;
        Py_RETURN_NONE;
    }
    {
        PyObject *t = PyTuple_New(10);
        if (t == NULL) {
            Py_DECREF(oid);
            return NULL;
        }
        PyObject *has_rl = top[R_LIMITS].kind != K_NONE ? Py_True : Py_False;
        Py_INCREF(has_rl);
        PyTuple_SET_ITEM(t, 0, PyLong_FromLongLong(rid));
        PyTuple_SET_ITEM(t, 1, has_rl);
        PyTuple_SET_ITEM(t, 2, text(&o[O_STATUS], s));
        PyTuple_SET_ITEM(t, 3, text(&o[O_CID], s));
        PyTuple_SET_ITEM(t, 4, oid);
        PyTuple_SET_ITEM(t, 5, PyFloat_FromDouble(px));
        PyTuple_SET_ITEM(t, 6, PyFloat_FromDouble(qty));
        PyTuple_SET_ITEM(t, 7, PyFloat_FromDouble(cum));
        PyTuple_SET_ITEM(t, 8, PyFloat_FromDouble(avg));
        PyTuple_SET_ITEM(t, 9, PyLong_FromLongLong(ts));
        return complete(t);
    }
}

enum { T_E, T_O, T_STREAM, T_DATA };
enum { E_C, E_X, E_I, E_P, E_Q, E_Z, E_AP, E_L, E_LP, E_T, E_M, E_N, E_TIME };

/* binance_order_event(text) -> (c, X, i, p, q, z, ap, l, L, t, m, n, T ms) for an ORDER_TRADE_UPDATE
 * (alone or as a combined stream's data); else None */
static PyObject *binance_order_event(PyObject *self, PyObject *arg)
{
    Py_ssize_t n;
    const char *s = ascii_text(arg, &n);
#define EVENT_FIELDS {WANT("c"), WANT("X"), WANT("i"), WANT("p"), WANT("q"), WANT("z"), WANT("ap"), \
                      WANT("l"), WANT("L"), WANT("t"), WANT("m"), WANT("n"), WANT("T")}
    Field o_top[13] = EVENT_FIELDS, o_data[13] = EVENT_FIELDS, *o = o_top;
    Field in_data[2] = {WANT("e"), WANT_OBJ("o", o_data, 13)};
    Field top[4] = {WANT("e"), WANT_OBJ("o", o_top, 13), WANT("stream"), WANT_OBJ("data", in_data, 2)};
    Field *ev = top;
    double v[8]; /* p q z ap l L n */
    long long ts, tid;
    PyObject *oid, *tidtext;
    int j;
    if (s == NULL)
        return NULL;
    if (n < 0 || scan_message(s, n, top, 4) < 0)
        Py_RETURN_NONE;
    if (top[T_STREAM].kind != K_NONE && top[T_DATA].kind != K_NONE) {
        /* a combined stream's frame: its data is the event */
        if (top[T_DATA].kind != K_OBJ)
            Py_RETURN_NONE;
        ev = in_data;
        o = o_data;
    }
    if (!is_text(&ev[T_E], s, "ORDER_TRADE_UPDATE") || ev[T_O].kind != K_OBJ)
        Py_RETURN_NONE;
    for (j = 0; j < 13; j++)
        if (o[j].kind == K_NONE && j != E_N)
            Py_RETURN_NONE;
    if (o[E_C].kind != K_STR || o[E_X].kind != K_STR || (o[E_M].kind != K_TRUE && o[E_M].kind != K_FALSE))
        Py_RETURN_NONE;
    for (j = E_P; j <= E_LP; j++)
        if (to_double(&o[j], s, &v[j - E_P]) < 0)
            Py_RETURN_NONE;
    v[6] = 0.0;
    if (o[E_N].kind != K_NONE && to_double(&o[E_N], s, &v[6]) < 0)
        Py_RETURN_NONE;
    if (to_ll(&o[E_TIME], s, &ts) < 0)
        Py_RETURN_NONE;
    /* the trade id as ``str(t) if t else ""``: a JSON 0 is "" */
    if (o[E_T].kind == K_INT) {
        if (to_ll(&o[E_T], s, &tid) < 0)
            Py_RETURN_NONE;
        if (tid == 0)
            tidtext = PyUnicode_FromStringAndSize("", 0);
        else
            tidtext = id_text(&o[E_T], s);
    } else if (o[E_T].kind == K_STR) {
        tidtext = id_text(&o[E_T], s);
    } else {
        Py_RETURN_NONE;
    }
    if (tidtext == NULL) {
        if (PyErr_Occurred())
            return NULL;
        Py_RETURN_NONE;
    }
    oid = id_text(&o[E_I], s);
    if (oid == NULL) {
        Py_DECREF(tidtext);
        if (PyErr_Occurred())
            return NULL;
        Py_RETURN_NONE;
    }
    {
        PyObject *t = PyTuple_New(13), *m = o[E_M].kind == K_TRUE ? Py_True : Py_False;
        if (t == NULL) {
            Py_DECREF(oid);
            Py_DECREF(tidtext);
            return NULL;
        }
        Py_INCREF(m);
        PyTuple_SET_ITEM(t, 0, text(&o[E_C], s));
        PyTuple_SET_ITEM(t, 1, text(&o[E_X], s));
        PyTuple_SET_ITEM(t, 2, oid);
        for (j = 0; j < 6; j++)
            PyTuple_SET_ITEM(t, 3 + j, PyFloat_FromDouble(v[j]));
        PyTuple_SET_ITEM(t, 9, tidtext);
        PyTuple_SET_ITEM(t, 10, m);
        PyTuple_SET_ITEM(t, 11, PyFloat_FromDouble(v[6]));
        PyTuple_SET_ITEM(t, 12, PyLong_FromLongLong(ts));
        return complete(t);
    }
}

/* the params' names, made once: a request's dozen keys were a str each per request (and a hash) */
#define KEY_SLOTS 64
#define KEY_MAX 31
static struct {
    Py_ssize_t len;
    char text[KEY_MAX + 1];
    PyObject *key;
} KEYS[KEY_SLOTS];

static PyObject *key_of(const char *k, Py_ssize_t m)
{
    PyObject *key;
    unsigned h;
    if (m == 0 || m > KEY_MAX)
        return PyUnicode_FromStringAndSize(k, m);
    h = ((unsigned)m * 31u + (unsigned char)k[0] * 7u + (unsigned char)k[m - 1] * 3u + (unsigned char)k[m / 2]) %
        KEY_SLOTS;
    if (KEYS[h].key != NULL && KEYS[h].len == m && memcmp(KEYS[h].text, k, (size_t)m) == 0) {
        Py_INCREF(KEYS[h].key);
        return KEYS[h].key;
    }
    key = PyUnicode_FromStringAndSize(k, m);
    if (key == NULL)
        return NULL;
    PyUnicode_InternInPlace(&key);
    Py_XDECREF(KEYS[h].key);
    Py_INCREF(key);
    KEYS[h].key = key;
    KEYS[h].len = m;
    memcpy(KEYS[h].text, k, (size_t)m);
    return key;
}

/* a JSON integer's text is 0 or -0 */
static int is_zero(const Field *f, const char *s)
{
    Py_ssize_t i = f->vs + (s[f->vs] == '-');
    return f->ve - i == 1 && s[i] == '0';
}

/* the members of the params object at i (its '{', the text already scanned as JSON) as a new dict
 * of their text: a string as it is, an integer of up to 18 digits as str(int) writes it; NULL
 * without an error for any other value */
static PyObject *params_dict(const char *s, Py_ssize_t n, Py_ssize_t i)
{
    PyObject *d = PyDict_New();
    if (d == NULL)
        return NULL;
    i = skip_ws(s, n, i + 1);
    if (i < n && s[i] == '}')
        return d;
    while (i < n) {
        Field v = {"", 0};
        Py_ssize_t ks = i + 1, ke;
        PyObject *key, *val;
        int r;
        i = skip_string(s, n, i);
        if (i < 0)
            break;
        ke = i - 1;
        i = skip_ws(s, n, i);
        i = skip_value(s, n, skip_ws(s, n, i + 1), 1, &v.kind, &v.vs, &v.ve);
        if (i < 0)
            break;
        if (v.kind == K_STR)
            val = text(&v, s);
        else if (v.kind == K_INT && !is_zero(&v, s))
            /* an integer, but not 0 (nor -0): its text is truthy where the integer was not, and the
             * emulator tests apiKey and signature for truth before it makes the values text */
            val = id_text(&v, s);
        else
            break;
        if (val == NULL)
            break;
        key = key_of(s + ks, ke - ks);
        r = key == NULL ? -1 : PyDict_SetItem(d, key, val);
        Py_XDECREF(key);
        Py_DECREF(val);
        if (r < 0)
            break;
        i = skip_ws(s, n, i);
        if (i < n && s[i] == '}')
            return d;
        i = skip_ws(s, n, i + 1); /* the ',' */
    }
    Py_DECREF(d);
    return NULL;
}

enum { W_ID, W_METHOD, W_PARAMS };

/* ws_request(text) -> (id, method, params) of a websocket API request {"id":..,"method":"..",
 * "params":{..}} (the emulator's side), its params a new dict of text as the operations read them
 * (numbers as written); None for anything else: another value type among the params (a boolean, a
 * fraction, an object...), an id neither an integer nor a string, no method, an escape, not JSON */
static PyObject *ws_request(PyObject *self, PyObject *arg)
{
    Py_ssize_t n;
    const char *s = ascii_text(arg, &n);
    Field top[3] = {WANT("id"), WANT("method"), WANT("params")};
    PyObject *rid, *params, *t;
    long long v;
    if (s == NULL)
        return NULL;
    if (n < 0 || scan_message(s, n, top, 3) < 0 || top[W_METHOD].kind != K_STR)
        Py_RETURN_NONE;
    if (top[W_PARAMS].kind == K_NONE)
        params = PyDict_New();
    else if (top[W_PARAMS].kind == K_OBJ)
        params = params_dict(s, n, top[W_PARAMS].vs);
    else
        Py_RETURN_NONE;
    if (params == NULL) {
        if (PyErr_Occurred())
            return NULL;
        Py_RETURN_NONE;
    }
    if (top[W_ID].kind == K_STR)
        rid = text(&top[W_ID], s);
    else if (to_ll(&top[W_ID], s, &v) == 0)
        rid = PyLong_FromLongLong(v);
    else {
        Py_DECREF(params);
        Py_RETURN_NONE;
    }
    t = PyTuple_New(3);
    if (t == NULL) {
        Py_XDECREF(rid);
        Py_DECREF(params);
        return NULL;
    }
    PyTuple_SET_ITEM(t, 0, rid);
    PyTuple_SET_ITEM(t, 1, text(&top[W_METHOD], s));
    PyTuple_SET_ITEM(t, 2, params);
    return complete(t);
}

static PyMethodDef methods[] = {
    {"ws_request", ws_request, METH_O, "A websocket API request's id, method and params as text, or None."},
    {"binance_reply", binance_reply, METH_O, "A WS API order reply's fields, or None (see the module)."},
    {"binance_order_event", binance_order_event, METH_O, "An ORDER_TRADE_UPDATE's fields, or None."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef replyfast_module = {
    PyModuleDef_HEAD_INIT, "daemon.execution._replyfast",
    "The Binance order reply and ORDER_TRADE_UPDATE read into the tracker's fields (C).", -1, methods,
};

PyMODINIT_FUNC
PyInit__replyfast(void)
{
    int c;
    for (c = 0; c < 0x20; c++)
        STOP[c] = 1;
    STOP['"'] = STOP['\\'] = 1;
    return PyModule_Create(&replyfast_module);
}
