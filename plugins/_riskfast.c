/*
 * plugins._riskfast: the risk plugin's accept decision (plugins/risk.py) as one C call.
 *
 * Why C: the router times the pre-trade check on the order path (``risk_p99_added_us``), one
 * check every few milliseconds with cold caches.  There a Python frame and the check's bytecode
 * cost microseconds each (bench/risk_micro.py: the Python check and a no-op check through the
 * router both ~17 us p50), while the arithmetic is a handful of float comparisons.  Here the
 * whole pass path is one METH_FASTCALL method over flat state: the limits, the state flags and
 * one token bucket per bot in a C array.
 *
 * Division of work (behaviour identical to RiskPlugin._check_py, which a parity test drives
 * side by side): C decides; Python does everything else through three callables given to the
 * constructor, each called only off the pass path:
 *   on_roll(now_ns)               the UTC day ended (the plugin rolls its PnL and sets day_end_ns);
 *   on_refuse(rule, *fields)      a refusal: the named RiskReject, counted, built from the rule number;
 *   on_mark(venue, symbol, side, position, qty, best_bid, best_ask)
 *                                 a position is open and the book is live: mark it to the touch and
 *                                 check the day's loss (the held positions stay Python's).
 * Floating point follows the Python check operation by operation (built with -ffp-contract=off,
 * so no fused multiply-add changes a token count's last bit).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include "structmember.h"
#include <math.h>
#include <stdint.h>
#include <time.h>

/* shm.orders.RiskRule values; plugins/risk.py compares RULES with its REJECT_NAMES at import */
enum {
    R_HALTED = 1, R_REDUCING_ONLY, R_MAX_ORDER_QTY, R_MAX_ORDER_NOTIONAL, R_MAX_POSITION, R_MAX_OPEN_ORDERS,
    R_MAX_SUBMIT_RATE, R_MAX_MODIFY_RATE, R_MAX_CANCEL_RATE, R_PRICE_FAR_FROM_TOUCH, R_NO_TOUCH,
};
static const char *const RULE_NAMES[] = {
    "halted", "reducing_only", "max_order_qty", "max_order_notional", "max_position", "max_open_orders",
    "max_submit_rate", "max_modify_rate", "max_cancel_rate", "price_far_from_touch", "no_touch",
};
#define N_RULES (sizeof(RULE_NAMES) / sizeof(RULE_NAMES[0]))
#define N_FIELDS 15 /* an OrderCheck's fields */

typedef struct {
    double tokens[3]; /* submit, modify, cancel */
    long long last_ns;
} Bucket;

/* A bot's bucket found by the name object's address: the router passes the same str object
 * (BotSession.name) every time, and with cold caches a dict lookup costs several cache misses
 * (the dict, its keys, the str's hash, the index int).  The name is held, so its address cannot
 * be reused by another object while it is here; an equal name at another address (or a
 * collision) goes through the dict. */
#define N_WAYS 64
typedef struct {
    PyObject *bot;
    Py_ssize_t slot;
} Way;

typedef struct {
    PyObject_HEAD
    /* what a check reads first, together */
    double rates_per_s[3];
    double max_open, max_qty, max_notional, max_pos, dev_up, dev_down;
    long submit_kind, modify_kind;
    long long day_end_ns;
    char require_touch, halted, reducing, pos_gate;
    Bucket *buckets;
    PyObject *pos_limits; /* dict symbol -> limit; NULL when empty (the Python check's falsy dict) */
    Py_ssize_t n_buckets, cap_buckets;
    PyObject *on_roll, *on_refuse, *on_mark;
    PyObject *slot_of;    /* dict bot -> index into buckets */
    Way ways[N_WAYS];
} Checker;

static int
checker_init(Checker *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"rates_per_s", "max_open", "max_qty", "max_notional", "max_pos", "pos_limits",
                             "require_touch", "dev_up", "dev_down", "submit_kind", "modify_kind",
                             "on_roll", "on_refuse", "on_mark", NULL};
    PyObject *pos_limits, *on_roll, *on_refuse, *on_mark;
    int require_touch;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "(ddd)ddddO!pddllOOO", kwlist, &self->rates_per_s[0],
                                     &self->rates_per_s[1], &self->rates_per_s[2], &self->max_open, &self->max_qty,
                                     &self->max_notional, &self->max_pos, &PyDict_Type, &pos_limits,
                                     &require_touch, &self->dev_up, &self->dev_down, &self->submit_kind,
                                     &self->modify_kind, &on_roll, &on_refuse, &on_mark))
        return -1;
    if (!PyCallable_Check(on_roll) || !PyCallable_Check(on_refuse) || !PyCallable_Check(on_mark)) {
        PyErr_SetString(PyExc_TypeError, "on_roll, on_refuse and on_mark must be callable");
        return -1;
    }
    self->require_touch = (char)require_touch;
    Py_XSETREF(self->pos_limits, PyDict_GET_SIZE(pos_limits) ? Py_NewRef(pos_limits) : NULL);
    Py_XSETREF(self->on_roll, Py_NewRef(on_roll));
    Py_XSETREF(self->on_refuse, Py_NewRef(on_refuse));
    Py_XSETREF(self->on_mark, Py_NewRef(on_mark));
    Py_XSETREF(self->slot_of, PyDict_New());
    if (self->slot_of == NULL)
        return -1;
    for (int w = 0; w < N_WAYS; w++)
        Py_CLEAR(self->ways[w].bot);
    self->n_buckets = 0;
    self->day_end_ns = 0;
    self->halted = self->reducing = 0;
    self->pos_gate = self->max_pos != INFINITY || self->pos_limits != NULL;
    return 0;
}

static int
checker_traverse(Checker *self, visitproc visit, void *arg)
{
    /* the callables are the plugin's bound methods, and the plugin holds this object */
    Py_VISIT(self->on_roll);
    Py_VISIT(self->on_refuse);
    Py_VISIT(self->on_mark);
    Py_VISIT(self->pos_limits);
    Py_VISIT(self->slot_of);
    for (int w = 0; w < N_WAYS; w++)
        Py_VISIT(self->ways[w].bot);
    return 0;
}

static int
checker_clear(Checker *self)
{
    Py_CLEAR(self->on_roll);
    Py_CLEAR(self->on_refuse);
    Py_CLEAR(self->on_mark);
    Py_CLEAR(self->pos_limits);
    Py_CLEAR(self->slot_of);
    for (int w = 0; w < N_WAYS; w++)
        Py_CLEAR(self->ways[w].bot);
    return 0;
}

static void
checker_dealloc(Checker *self)
{
    PyObject_GC_UnTrack(self);
    checker_clear(self);
    PyMem_Free(self->buckets);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* bot's bucket, created full (one second's worth) and stamped now, as the Python check does */
static Bucket *
bucket_of(Checker *self, PyObject *bot, long long now)
{
    Way *way = &self->ways[((uintptr_t)bot >> 4) & (N_WAYS - 1)];
    if (way->bot == bot)
        return &self->buckets[way->slot];
    Py_ssize_t k;
    PyObject *ix = PyDict_GetItemWithError(self->slot_of, bot);
    if (ix != NULL) {
        k = PyLong_AsSsize_t(ix);
        if (k == -1 && PyErr_Occurred())
            return NULL;
    } else {
        if (PyErr_Occurred())
            return NULL;
        if (self->n_buckets == self->cap_buckets) {
            Py_ssize_t cap = self->cap_buckets ? 2 * self->cap_buckets : 8;
            Bucket *grown = PyMem_Realloc(self->buckets, (size_t)cap * sizeof(Bucket));
            if (grown == NULL) {
                PyErr_NoMemory();
                return NULL;
            }
            self->buckets = grown;
            self->cap_buckets = cap;
        }
        k = self->n_buckets;
        PyObject *key = PyLong_FromSsize_t(k);
        if (key == NULL)
            return NULL;
        int err = PyDict_SetItem(self->slot_of, bot, key);
        Py_DECREF(key);
        if (err < 0)
            return NULL;
        self->n_buckets++;
        Bucket *b = &self->buckets[k];
        for (int i = 0; i < 3; i++)
            b->tokens[i] = self->rates_per_s[i];
        b->last_ns = now;
    }
    Py_XSETREF(way->bot, Py_NewRef(bot));
    way->slot = k;
    return &self->buckets[k];
}

static PyObject *
refuse(Checker *self, int rule, PyObject *const *fields)
{
    PyObject *stack[1 + N_FIELDS];
    stack[0] = PyLong_FromLong(rule); /* a small int: cached, no allocation */
    if (stack[0] == NULL)
        return NULL;
    memcpy(&stack[1], fields, N_FIELDS * sizeof(PyObject *));
    PyObject *res = PyObject_Vectorcall(self->on_refuse, stack, 1 + N_FIELDS, NULL);
    Py_DECREF(stack[0]);
    return res;
}

static inline int
as_double(PyObject *o, double *out)
{
    if (PyFloat_CheckExact(o)) {
        *out = PyFloat_AS_DOUBLE(o);
        return 0;
    }
    *out = PyFloat_AsDouble(o);
    return (*out == -1.0 && PyErr_Occurred()) ? -1 : 0;
}

/* check(bot, venue, symbol, kind, order_id, side, price, qty, time_in_force, order_type, position,
 *       open_orders, best_bid, best_ask, now_ns) -> None (pass) or what on_refuse/on_mark return */
static PyObject *
checker_check(Checker *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != N_FIELDS) {
        PyErr_Format(PyExc_TypeError, "check takes an OrderCheck's %d fields (%zd given)", N_FIELDS, nargs);
        return NULL;
    }
    long long now = PyLong_AsLongLong(args[14]);
    if (now == -1 && PyErr_Occurred())
        return NULL;
    if (now == 0) { /* time.time_ns() */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        now = (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
    }
    if (now >= self->day_end_ns) {
        PyObject *n = PyLong_FromLongLong(now);
        if (n == NULL)
            return NULL;
        PyObject *r = PyObject_CallOneArg(self->on_roll, n);
        Py_DECREF(n);
        if (r == NULL)
            return NULL;
        Py_DECREF(r);
    }
    Bucket *b = bucket_of(self, args[0], now);
    if (b == NULL)
        return NULL;
    double dt;
    if (now > b->last_ns) {
        dt = (double)(now - b->last_ns) * 1e-9;
        b->last_ns = now;
    } else { /* an older stamp (callers' clocks differ): no refill, and no drain */
        dt = 0.0;
    }
    long kind = PyLong_AsLong(args[3]);
    if (kind == -1 && PyErr_Occurred())
        return NULL;
    int i = kind == self->submit_kind ? 0 : kind == self->modify_kind ? 1 : 2;
    double rate = self->rates_per_s[i];
    double tokens = b->tokens[i] + dt * rate;
    if (tokens > rate)
        tokens = rate; /* burst: one second's worth */
    if (tokens < 1.0) {
        b->tokens[i] = tokens;
        return refuse(self, R_MAX_SUBMIT_RATE + i, args);
    }
    b->tokens[i] = tokens - 1.0;
    if (i == 2) /* CANCEL, CANCEL_ALL: pass in every state, at their own rate */
        Py_RETURN_NONE;
    if (self->halted)
        return refuse(self, R_HALTED, args);
    double side, price, qty, position, open_orders, bid, ask;
    if (as_double(args[5], &side) || as_double(args[6], &price) || as_double(args[7], &qty)
        || as_double(args[10], &position) || as_double(args[11], &open_orders) || as_double(args[12], &bid)
        || as_double(args[13], &ask))
        return NULL;
    if (i == 0 && open_orders >= self->max_open)
        return refuse(self, R_MAX_OPEN_ORDERS, args);
    if (qty > self->max_qty)
        return refuse(self, R_MAX_ORDER_QTY, args);
    if (price * qty > self->max_notional)
        return refuse(self, R_MAX_ORDER_NOTIONAL, args);
    if (self->pos_gate) { /* REDUCING, or a position limit applies */
        int reduces = side != 0.0 && position * side < 0.0 && qty <= fabs(position);
        if (self->reducing) {
            if (!reduces)
                return refuse(self, R_REDUCING_ONLY, args);
        } else {
            double limit = self->max_pos;
            if (self->pos_limits != NULL) {
                PyObject *v = PyDict_GetItemWithError(self->pos_limits, args[2]);
                if (v != NULL) {
                    if (as_double(v, &limit))
                        return NULL;
                } else if (PyErr_Occurred()) {
                    return NULL;
                }
            }
            double after = position + side * qty;
            if ((after > limit || after < -limit) && !reduces)
                return refuse(self, R_MAX_POSITION, args);
        }
    }
    if (side > 0.0) {
        if (ask != ask) { /* NaN: the book is not live */
            if (self->require_touch)
                return refuse(self, R_NO_TOUCH, args);
        } else if (price > ask * self->dev_up) {
            return refuse(self, R_PRICE_FAR_FROM_TOUCH, args);
        }
    } else if (side < 0.0) {
        if (bid != bid) {
            if (self->require_touch)
                return refuse(self, R_NO_TOUCH, args);
        } else if (price < bid * self->dev_down) {
            return refuse(self, R_PRICE_FAR_FROM_TOUCH, args);
        }
    }
    if (position != 0.0 && bid == bid && ask == ask) {
        PyObject *stack[7] = {args[1], args[2], args[5], args[10], args[7], args[12], args[13]};
        return PyObject_Vectorcall(self->on_mark, stack, 7, NULL);
    }
    Py_RETURN_NONE;
}

/* bucket(bot) -> (submit tokens, modify tokens, cancel tokens, last ns) or None: for tests and status */
static PyObject *
checker_bucket(Checker *self, PyObject *bot)
{
    PyObject *ix = PyDict_GetItemWithError(self->slot_of, bot);
    if (ix == NULL) {
        if (PyErr_Occurred())
            return NULL;
        Py_RETURN_NONE;
    }
    Py_ssize_t k = PyLong_AsSsize_t(ix);
    if (k == -1 && PyErr_Occurred())
        return NULL;
    Bucket *b = &self->buckets[k];
    return Py_BuildValue("(dddL)", b->tokens[0], b->tokens[1], b->tokens[2], b->last_ns);
}

static PyMethodDef checker_methods[] = {
    {"check", (PyCFunction)(void (*)(void))checker_check, METH_FASTCALL,
     "check(*OrderCheck fields) -> None (pass) or the refusal on_refuse/on_mark gives."},
    {"bucket", (PyCFunction)checker_bucket, METH_O,
     "bucket(bot) -> (submit, modify, cancel tokens, last refill ns), or None before its first check."},
    {NULL, NULL, 0, NULL},
};

/* the state the plugin sets (RiskPlugin._set, _roll_day) */
static PyMemberDef checker_members[] = {
    {"day_end_ns", T_LONGLONG, offsetof(Checker, day_end_ns), 0, "the current UTC day's end (ns)"},
    {"halted", T_BOOL, offsetof(Checker, halted), 0, "HALTED: only cancels pass"},
    {"reducing", T_BOOL, offsetof(Checker, reducing), 0, "REDUCING: only reducing orders pass"},
    {"pos_gate", T_BOOL, offsetof(Checker, pos_gate), 0, "REDUCING, or a position limit applies"},
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject CheckerType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "plugins._riskfast.Checker",
    .tp_basicsize = sizeof(Checker),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "The risk plugin's accept decision over flat state (see plugins/risk.py).",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)checker_init,
    .tp_dealloc = (destructor)checker_dealloc,
    .tp_traverse = (traverseproc)checker_traverse,
    .tp_clear = (inquiry)checker_clear,
    .tp_methods = checker_methods,
    .tp_members = checker_members,
};

static struct PyModuleDef riskfast_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_riskfast",
    .m_doc = "The risk plugin's accept decision in C (see plugins/risk.py).",
    .m_size = -1,
};

PyMODINIT_FUNC
PyInit__riskfast(void)
{
    if (PyType_Ready(&CheckerType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&riskfast_module);
    if (m == NULL)
        return NULL;
    PyObject *rules = PyTuple_New(N_RULES);
    if (rules == NULL)
        goto fail;
    for (Py_ssize_t r = 0; r < (Py_ssize_t)N_RULES; r++) {
        PyObject *s = PyUnicode_FromString(RULE_NAMES[r]);
        if (s == NULL) {
            Py_DECREF(rules);
            goto fail;
        }
        PyTuple_SET_ITEM(rules, r, s);
    }
    if (PyModule_AddObject(m, "RULES", rules) < 0) {
        Py_DECREF(rules);
        goto fail;
    }
    Py_INCREF(&CheckerType);
    if (PyModule_AddObject(m, "Checker", (PyObject *)&CheckerType) < 0) {
        Py_DECREF(&CheckerType);
        goto fail;
    }
    return m;
fail:
    Py_DECREF(m);
    return NULL;
}
