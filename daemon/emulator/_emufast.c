/*
 * daemon.emulator._emufast: the Binance emulator's texts of its websocket API fast path
 * (binance_fast.py) in one C call per request: the reply to order.place / order.cancel of an order
 * with nothing filled, and that order's ORDER_TRADE_UPDATE (NEW or CANCELED, no fill).
 *
 * Why C: written in Python (binance_wire.BinanceWire.order_text / order_update_json, the reply's
 * f-string, the memos of prices, quantities and resting notionals) they were ~8 us of the
 * emulator's ~20 us of CPU per order (place + cancel) in bench.emulator_orders, the emulator being
 * the bottleneck of `hftd bench orders`.
 *
 * Meaning: the Python is the reference and the fallback (where this is not built, and for every
 * case this answers None: something filled, a fill in the event, a field of another type, a
 * non-ASCII text, an integer beyond 64 bits, a text longer than the buffer).
 * tests/daemon/test_emulator_texts.py compares both to the byte over many orders.
 *
 * Numbers are written as Python writes them: a float through PyOS_double_to_string with the 'f'
 * format (what f"{x:.3f}" calls), a quantity rounded first by Python's own round(x, 10) (as
 * Account.qty does), an int's digits in decimal.  A price is ticks * tick, a resting notional
 * units * tick * lot, multiplied in that order as Python does (an int converted to double first).
 * order_frames writes the same texts as websocket text frames, the rateLimits from their counts: the
 * fast path queues them as they are (a frame's header, the rateLimits join and two str encodes per
 * text were ~1.5 us of the ~16 us per order).
 * The formatted numbers are cached (direct-mapped, keyed by the exact inputs): an order's few values
 * recur in every reply and event, and a float format is ~0.2 us.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <stdint.h>
#include <string.h>

#define BUF_MAX 4096
#define CACHE_SLOTS 1024
#define TEXT_MAX 47

enum { KIND_QTY = 1000, KIND_NOTIONAL = 1001 };  /* below 1000: a price with that many decimals */

typedef struct {
    uint64_t a, b;
    int kind;
    unsigned char len;  /* 0: empty slot */
    char text[TEXT_MAX];
} Slot;

static Slot cache[CACHE_SLOTS];
static PyObject *round_fn;  /* builtins.round */
/* an Order's fields this reads, and their names */
enum { F_ORDER_ID, F_CLIENT_ID, F_SYMBOL, F_SIDE, F_TYPE, F_TIF, F_PRICE, F_QTY, F_REDUCE_ONLY, F_FILLED, F_QUOTE,
       F_STATUS, F_CREATED_MS, F_UPDATED_MS, F_ORIG_TYPE, F_META, F_COUNT };
static const char *const field_names[F_COUNT] = {
    "order_id", "client_id", "symbol", "side", "type", "tif", "price", "qty", "reduce_only", "filled", "quote",
    "status", "created_ms", "updated_ms", "orig_type", "meta"};
static PyObject *names[F_COUNT];

typedef struct {
    char *p, *end;
} Out;

static int
put(Out *o, const char *s, Py_ssize_t n)
{
    if (n > o->end - o->p)
        return -1;
    memcpy(o->p, s, (size_t)n);
    o->p += n;
    return 0;
}

#define PUTL(o, lit) put((o), (lit), (Py_ssize_t)(sizeof(lit) - 1))

/* an ASCII str's characters (NULL, no exception set, for anything else) */
static const char *
ascii_of(PyObject *s, Py_ssize_t *n)
{
    if (s == NULL || !PyUnicode_CheckExact(s) || !PyUnicode_IS_ASCII(s))
        return NULL;
    *n = PyUnicode_GET_LENGTH(s);
    return (const char *)PyUnicode_DATA(s);
}

static int
put_str(Out *o, PyObject *s)
{
    Py_ssize_t n;
    const char *c = ascii_of(s, &n);
    return c == NULL ? -1 : put(o, c, n);
}

/* x in decimal, as str(int) writes it (snprintf's format parsing was most of an int's cost) */
static int
put_digits(Out *o, long long x, char *tmp)
{
    char *e = tmp + 24, *p = e;
    unsigned long long u = x < 0 ? 0ULL - (unsigned long long)x : (unsigned long long)x;
    do {
        *--p = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (x < 0)
        *--p = '-';
    return put(o, p, e - p);
}

/* a 64-bit int's decimal digits (-1, no exception set, for a bool, another type or more bits) */
static int
put_int(Out *o, PyObject *v)
{
    char tmp[24];
    int overflow;
    long long x;
    if (v == NULL || !PyLong_CheckExact(v))
        return -1;
    x = PyLong_AsLongLongAndOverflow(v, &overflow);
    if (overflow || (x == -1 && PyErr_Occurred())) {
        PyErr_Clear();
        return -1;
    }
    return put_digits(o, x, tmp);
}

static uint64_t
bits_of(double d)
{
    uint64_t u;
    memcpy(&u, &d, sizeof u);
    return u;
}

/* The text of number (a, b) of ``kind`` (a price: ticks a, tick bits b, kind decimals; a quantity:
 * lots a, lot bits b; a notional: value bits a), from the cache or written and cached.  -1 with an
 * exception set where Python's round or the format failed. */
static int
put_number(Out *o, uint64_t a, uint64_t b, int kind)
{
    uint64_t h = (a * 0x9E3779B97F4A7C15ULL) ^ (b * 0xC2B2AE3D27D4EB4FULL) ^ (uint64_t)kind;
    Slot *s = &cache[(h ^ (h >> 29)) & (CACHE_SLOTS - 1)];
    double x, unit;
    char *text;
    size_t n;
    if (s->len && s->a == a && s->b == b && s->kind == kind)
        return put(o, s->text, s->len);
    memcpy(&unit, &b, sizeof unit);
    if (kind == KIND_NOTIONAL) {
        memcpy(&x, &a, sizeof x);
        text = PyOS_double_to_string(x, 'f', 5, 0, NULL);
    } else if (kind == KIND_QTY) {
        PyObject *r = PyObject_CallFunction(round_fn, "di", (double)(int64_t)a * unit, 10);
        if (r == NULL)
            return -1;
        x = PyFloat_AsDouble(r);
        Py_DECREF(r);
        if (x == -1.0 && PyErr_Occurred())
            return -1;
        text = PyOS_double_to_string(x, 'f', 3, 0, NULL);
    } else {
        text = PyOS_double_to_string((double)(int64_t)a * unit, 'f', kind, 0, NULL);
    }
    if (text == NULL)
        return -1;
    n = strlen(text);
    if (n <= TEXT_MAX) {
        s->a = a, s->b = b, s->kind = kind, s->len = (unsigned char)n;
        memcpy(s->text, text, n);
    }
    n = (size_t)put(o, text, (Py_ssize_t)n);  /* (-1: longer than the buffer, None without an exception) */
    PyMem_Free(text);
    return (int)n;
}

/* An Order's fields, borrowed from the order (it outlives the call; ``refs`` holds what a generic
 * attribute read returned). */
typedef struct {
    PyObject *refs[F_COUNT + 1];
    int n;
    PyObject *order_id, *client_id, *symbol, *type, *tif, *status, *created_ms, *updated_ms, *orig_type;
    const char *side;
    const char *reduce_only;
    long long price, qty;
} Fields;

/* Order is a slotted dataclass: its fields are read at their slots' offsets, learnt once from its
 * member descriptors (32 PyObject_GetAttr calls per request were ~0.4 us of its ~0.85). Any other
 * type, or a field that is not a plain slot, is read with PyObject_GetAttr. */
static PyTypeObject *slot_type;
static Py_ssize_t slot_offset[F_COUNT];

static int
learn_slots(PyTypeObject *t)
{
    Py_ssize_t off[F_COUNT];
    int i;
    for (i = 0; i < F_COUNT; i++) {
        PyObject *d = PyObject_GetAttr((PyObject *)t, names[i]);
        int plain = d != NULL && Py_IS_TYPE(d, &PyMemberDescr_Type) &&
                    ((PyMemberDescrObject *)d)->d_member->type == T_OBJECT_EX &&
                    !(((PyMemberDescrObject *)d)->d_member->flags & READONLY);
        if (plain)
            off[i] = ((PyMemberDescrObject *)d)->d_member->offset;
        Py_XDECREF(d);
        if (!plain) {
            PyErr_Clear();
            return 0;
        }
    }
    memcpy(slot_offset, off, sizeof off);
    Py_INCREF(t);
    Py_XSETREF(slot_type, t);
    return 1;
}

static PyObject *
get(Fields *f, PyObject *o, int field)
{
    PyObject *v;
    if (Py_TYPE(o) == slot_type) {
        v = *(PyObject **)((char *)o + slot_offset[field]);
        if (v == NULL)  /* an unset slot: what the attribute read raises */
            PyErr_SetObject(PyExc_AttributeError, names[field]);
        return v;
    }
    v = PyObject_GetAttr(o, names[field]);
    if (v != NULL)
        f->refs[f->n++] = v;
    return v;
}

static void
release(Fields *f)
{
    while (f->n)
        Py_DECREF(f->refs[--f->n]);
}

/* a 64-bit int (*bad set, no exception, for a bool, another type or more bits); an int64's conversion
 * to double is correctly rounded (to nearest, ties to even) as Python's int-to-float is */
static long long
small_int(PyObject *v, int *bad)
{
    int overflow;
    long long x;
    if (v == NULL || !PyLong_CheckExact(v)) {
        *bad = 1;
        return 0;
    }
    x = PyLong_AsLongLongAndOverflow(v, &overflow);
    if (overflow || (x == -1 && PyErr_Occurred())) {
        *bad = 1;
        PyErr_Clear();
    }
    return x;
}

/* an int as Python's int * float converts it (PyLong_AsDouble); *bad for another type or too large */
static double
int_as_double(PyObject *v, int *bad)
{
    double x;
    if (!PyLong_CheckExact(v)) {
        *bad = 1;
        return 0.0;
    }
    x = PyLong_AsDouble(v);
    if (x == -1.0 && PyErr_Occurred()) {
        *bad = 1;
        PyErr_Clear();
    }
    return x;
}

/* 1: read; 0: not the plain case (nothing filled, fields of their usual types); -1: an error */
static int
read_order(Fields *f, PyObject *o)
{
    PyObject *v, *meta;
    int bad = 0, t;
    f->n = 0;
    if (Py_TYPE(o) != slot_type)
        learn_slots(Py_TYPE(o));
    if ((v = get(f, o, F_FILLED)) == NULL)
        return -1;
    if (small_int(v, &bad) != 0 || bad) {
        PyErr_Clear();
        return 0;
    }
    if ((v = get(f, o, F_QUOTE)) == NULL)
        return -1;
    if (!PyFloat_CheckExact(v) || PyFloat_AS_DOUBLE(v) != 0.0)
        return 0;  /* (Python writes a nonzero quote; none with nothing filled) */
    if ((f->order_id = get(f, o, F_ORDER_ID)) == NULL || (f->client_id = get(f, o, F_CLIENT_ID)) == NULL ||
        (f->symbol = get(f, o, F_SYMBOL)) == NULL || (f->type = get(f, o, F_TYPE)) == NULL ||
        (f->status = get(f, o, F_STATUS)) == NULL || (f->created_ms = get(f, o, F_CREATED_MS)) == NULL ||
        (f->updated_ms = get(f, o, F_UPDATED_MS)) == NULL || (f->orig_type = get(f, o, F_ORIG_TYPE)) == NULL ||
        (meta = get(f, o, F_META)) == NULL)
        return -1;
    /* the time in force as Python reads it: o.meta.get("tif", o.tif) */
    if (!PyDict_CheckExact(meta))
        return 0;
    f->tif = PyDict_GetItemWithError(meta, names[F_TIF]);
    if (f->tif == NULL) {
        if (PyErr_Occurred() || (f->tif = get(f, o, F_TIF)) == NULL)
            return -1;
    }
    if ((v = get(f, o, F_SIDE)) == NULL)
        return -1;
    f->side = small_int(v, &bad) > 0 ? "BUY" : "SELL";
    if ((v = get(f, o, F_REDUCE_ONLY)) == NULL || (t = PyObject_IsTrue(v)) < 0)
        return -1;
    f->reduce_only = t ? "true" : "false";
    f->price = small_int(get(f, o, F_PRICE), &bad);
    f->qty = small_int(get(f, o, F_QTY), &bad);
    if (PyErr_Occurred())
        return -1;
    return !bad;
}

/* The order object of the replies (BinanceWire.order_text, nothing filled). */
static int
put_order(Out *o, Fields *f, uint64_t tick, int decimals, uint64_t lot)
{
    if (PUTL(o, "{\"orderId\":") || put_int(o, f->order_id) || PUTL(o, ",\"symbol\":\"") || put_str(o, f->symbol) ||
        PUTL(o, "\",\"status\":\"") || put_str(o, f->status) || PUTL(o, "\",\"clientOrderId\":\"") ||
        put_str(o, f->client_id) || PUTL(o, "\",\"price\":\"") ||
        put_number(o, (uint64_t)f->price, tick, decimals) || PUTL(o, "\",\"avgPrice\":\"0\",\"origQty\":\"") ||
        put_number(o, (uint64_t)f->qty, lot, KIND_QTY) ||
        PUTL(o, "\",\"executedQty\":\"0.000\",\"cumQty\":\"0.000\",\"cumQuote\":\"0.00000000\",\"timeInForce\":\"") ||
        put_str(o, f->tif) || PUTL(o, "\",\"type\":\"") || put_str(o, f->type) || PUTL(o, "\",\"reduceOnly\":") ||
        put(o, f->reduce_only, (Py_ssize_t)strlen(f->reduce_only)) ||
        PUTL(o, ",\"closePosition\":false,\"side\":\"") || put(o, f->side, (Py_ssize_t)strlen(f->side)) ||
        PUTL(o, "\",\"positionSide\":\"BOTH\",\"stopPrice\":\"0\",\"workingType\":\"CONTRACT_PRICE\","
                "\"priceProtect\":false,\"origType\":\"") ||
        put_str(o, f->orig_type) ||
        PUTL(o, "\",\"priceMatch\":\"NONE\",\"selfTradePreventionMode\":\"EXPIRE_MAKER\",\"goodTillDate\":0,"
                "\"time\":") ||
        put_int(o, f->created_ms) || PUTL(o, ",\"updateTime\":") || put_int(o, f->updated_ms) || PUTL(o, "}"))
        return -1;
    return 0;
}

/* ORDER_TRADE_UPDATE of an event without a fill of an order with nothing filled
 * (BinanceWire.order_update_json); ``b``/``a`` the resting notionals. */
static int
put_update(Out *o, Fields *f, PyObject *kind, PyObject *ts, double b, double a, uint64_t tick, int decimals,
           uint64_t lot)
{
    if (PUTL(o, "{\"e\":\"ORDER_TRADE_UPDATE\",\"E\":") || put_int(o, ts) || PUTL(o, ",\"T\":") || put_int(o, ts) ||
        PUTL(o, ",\"o\":{\"s\":\"") || put_str(o, f->symbol) || PUTL(o, "\",\"c\":\"") || put_str(o, f->client_id) ||
        PUTL(o, "\",\"S\":\"") || put(o, f->side, (Py_ssize_t)strlen(f->side)) || PUTL(o, "\",\"o\":\"") ||
        put_str(o, f->type) || PUTL(o, "\",\"f\":\"") || put_str(o, f->tif) || PUTL(o, "\",\"q\":\"") ||
        put_number(o, (uint64_t)f->qty, lot, KIND_QTY) || PUTL(o, "\",\"p\":\"") ||
        put_number(o, (uint64_t)f->price, tick, decimals) || PUTL(o, "\",\"ap\":\"0\",\"sp\":\"0\",\"x\":\"") ||
        put_str(o, kind) || PUTL(o, "\",\"X\":\"") || put_str(o, f->status) || PUTL(o, "\",\"i\":") ||
        put_int(o, f->order_id) || PUTL(o, ",\"l\":\"0\",\"z\":\"0.000\",\"L\":\"0\",\"T\":") || put_int(o, ts) ||
        PUTL(o, ",\"t\":0,\"b\":\"") || put_number(o, bits_of(b), 0, KIND_NOTIONAL) || PUTL(o, "\",\"a\":\"") ||
        put_number(o, bits_of(a), 0, KIND_NOTIONAL) || PUTL(o, "\",\"m\":false,\"R\":") ||
        put(o, f->reduce_only, (Py_ssize_t)strlen(f->reduce_only)) ||
        PUTL(o, ",\"wt\":\"CONTRACT_PRICE\",\"ot\":\"") || put_str(o, f->orig_type) ||
        PUTL(o, "\",\"ps\":\"BOTH\",\"cp\":false,\"rp\":\"0\",\"pP\":false,\"si\":0,\"ss\":0,\"V\":\"EXPIRE_MAKER\","
                "\"pm\":\"NONE\",\"gtd\":0}}"))
        return -1;
    return 0;
}

/* The rateLimits value: a str as it is, or BinanceTrading._rate_limits_parts' tuple (text0, the
 * minute's used weight, text1, the orders of the last 10 s, text2, those of the last minute) joined
 * as _rate_limits_text joins it, "}]" after (a join of six parts in Python per reply). */
static int
put_limits(Out *o, PyObject *rl)
{
    if (PyUnicode_CheckExact(rl))
        return put_str(o, rl);
    if (!PyTuple_CheckExact(rl) || PyTuple_GET_SIZE(rl) != 6)
        return -1;
    for (int i = 0; i < 3; i++)
        if (put_str(o, PyTuple_GET_ITEM(rl, 2 * i)) || put_int(o, PyTuple_GET_ITEM(rl, 2 * i + 1)))
            return -1;
    return PUTL(o, "}]");
}

/* The text (frames == 0: a str) or the websocket text frame (frames == 1: bytes, the frame's header
 * in front, as core.frame_head writes it) of what ``o`` holds from ``start``; ``start`` has
 * FRAME_ROOM bytes free before it for the header. */
#define FRAME_ROOM 4

static PyObject *
result_of(Out *o, char *start, int frames)
{
    Py_ssize_t n = o->p - start;
    PyObject *s;
    if (frames) {
        if (n < 126) {
            start -= 2;
            start[0] = (char)0x81, start[1] = (char)n;
        } else if (n < 65536) {
            start -= 4;
            start[0] = (char)0x81, start[1] = 126, start[2] = (char)(n >> 8), start[3] = (char)(n & 0xFF);
        } else {
            Py_RETURN_NONE;  /* (a buffer of BUF_MAX never holds one) */
        }
        return PyBytes_FromStringAndSize(start, o->p - start);
    }
    s = PyUnicode_New(n, 127);
    if (s != NULL)
        memcpy(PyUnicode_DATA(s), start, (size_t)n);
    return s;
}

/* order_texts / order_frames (rid, rate_limits, order, event, tick, lot, decimals, rest) */
static PyObject *
answer(PyObject *const *args, Py_ssize_t nargs, int frames)
{
    char rbuf[FRAME_ROOM + BUF_MAX], ebuf[FRAME_ROOM + BUF_MAX];
    Out r = {rbuf + FRAME_ROOM, rbuf + FRAME_ROOM + BUF_MAX}, e = {ebuf + FRAME_ROOM, ebuf + FRAME_ROOM + BUF_MAX};
    Fields fo, fe;
    PyObject *ev, *kind, *ts, *rest, *reply = NULL, *event = NULL, *out;
    double tick_d, lot_d, b, a;
    uint64_t tick, lot;
    long decimals;
    int got, bad = 0;
    if (nargs != 8) {
        PyErr_SetString(PyExc_TypeError, "order_texts takes 8 arguments");
        return NULL;
    }
    ev = args[3], rest = args[7];
    tick_d = PyFloat_AsDouble(args[4]);
    lot_d = PyFloat_AsDouble(args[5]);
    decimals = PyLong_AsLong(args[6]);
    if (PyErr_Occurred())
        return NULL;
    /* (an int tick or lot: Python's int products and formats of them are not this one's) */
    if (decimals < 0 || decimals > 60 || !PyFloat_CheckExact(args[4]) || !PyFloat_CheckExact(args[5]) ||
        !PyTuple_Check(ev) || PyTuple_GET_SIZE(ev) < 4 ||
        PyTuple_GET_ITEM(ev, 2) != Py_None || !PyList_CheckExact(rest) || PyList_GET_SIZE(rest) != 2)
        Py_RETURN_NONE;
    kind = PyTuple_GET_ITEM(ev, 0), ts = PyTuple_GET_ITEM(ev, 3);
    b = int_as_double(PyList_GET_ITEM(rest, 0), &bad) * tick_d * lot_d;
    a = int_as_double(PyList_GET_ITEM(rest, 1), &bad) * tick_d * lot_d;
    if (bad) {
        PyErr_Clear();
        Py_RETURN_NONE;
    }
    tick = bits_of(tick_d), lot = bits_of(lot_d);
    if ((got = read_order(&fo, args[2])) != 1) {
        release(&fo);
        if (got < 0)
            return NULL;
        Py_RETURN_NONE;
    }
    if (PyTuple_GET_ITEM(ev, 1) == args[2]) {
        /* the event's order is the order itself (the fast path's NEW and CANCELED are): read once */
        fe = fo;
        fe.n = 0;  /* (its references, if any, are fo's to release) */
    } else if ((got = read_order(&fe, PyTuple_GET_ITEM(ev, 1))) != 1) {
        release(&fo);
        release(&fe);
        if (got < 0)
            return NULL;
        Py_RETURN_NONE;
    }
    got = PUTL(&r, "{\"id\":") || put_str(&r, args[0]) || PUTL(&r, ",\"status\":200,\"result\":") ||
          put_order(&r, &fo, tick, (int)decimals, lot) ||
          (args[1] != Py_None && (PUTL(&r, ",\"rateLimits\":") || put_limits(&r, args[1]))) || PUTL(&r, "}") ||
          put_update(&e, &fe, kind, ts, b, a, tick, (int)decimals, lot);
    release(&fo);
    release(&fe);
    if (got) {
        if (PyErr_Occurred())
            return NULL;
        Py_RETURN_NONE;
    }
    if ((reply = result_of(&r, rbuf + FRAME_ROOM, frames)) == NULL ||
        (event = result_of(&e, ebuf + FRAME_ROOM, frames)) == NULL) {
        Py_XDECREF(reply);
        return NULL;
    }
    if (reply == Py_None || event == Py_None) {
        Py_DECREF(reply);
        Py_DECREF(event);
        Py_RETURN_NONE;
    }
    out = PyTuple_Pack(2, reply, event);
    Py_DECREF(reply);
    Py_DECREF(event);
    return out;
}

static PyObject *
order_texts(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    return answer(args, nargs, 0);
}

static PyObject *
order_frames(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    return answer(args, nargs, 1);
}

/* untracked(o) -> o, no longer tracked by the cycle collector (see matching.Account._open_new) */
static PyObject *
untracked(PyObject *self, PyObject *o)
{
    (void)self;
    if (PyObject_IS_GC(o))  /* (the untrack reads a header only objects of the collector have) */
        PyObject_GC_UnTrack(o);
    Py_INCREF(o);
    return o;
}

static PyMethodDef methods[] = {
    {"untracked", untracked, METH_O,
     "untracked(o): o, untracked by the cycle collector (for objects that cannot be part of a cycle)."},
    {"order_texts", (PyCFunction)(void (*)(void))order_texts, METH_FASTCALL,
     "order_texts(rid, rate_limits, order, event, tick, lot, decimals, rest): (reply, ORDER_TRADE_UPDATE) "
     "of the fast path's order with nothing filled, or None (see the module); rate_limits: None, its text, "
     "or (text0, used, text1, n10, text2, n1m) (see put_limits)."},
    {"order_frames", (PyCFunction)(void (*)(void))order_frames, METH_FASTCALL,
     "order_frames(...): order_texts' two texts as websocket text frames (bytes, header in front), or None."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef emufast_module = {
    PyModuleDef_HEAD_INIT, "daemon.emulator._emufast",
    "The Binance emulator's fast-path reply and ORDER_TRADE_UPDATE texts (C).", -1, methods,
};

PyMODINIT_FUNC
PyInit__emufast(void)
{
    PyObject *builtins = PyImport_ImportModule("builtins");
    if (builtins == NULL)
        return NULL;
    round_fn = PyObject_GetAttrString(builtins, "round");
    Py_DECREF(builtins);
    if (round_fn == NULL)
        return NULL;
    for (int i = 0; i < F_COUNT; i++)
        if ((names[i] = PyUnicode_InternFromString(field_names[i])) == NULL)
            return NULL;
    return PyModule_Create(&emufast_module);
}
