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
 *   on_loss(reduces)              the day's loss is near a limit after a mark (or the state is
 *                                 REDUCING): the plugin checks the loss and may refuse.
 * The held positions, their marks and the day's PnL are here too (a check marks the position to
 * the touch when one is open and the book is live); the plugin books fills through held() and
 * set_held() and reads pnl / day_start_pnl.
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

/* a (venue, symbol)'s position from fills and its mark; the names are held */
typedef struct {
    PyObject *venue, *symbol;
    double pos, mark;
    char marked;
} Held;

/* a Held found by its names' addresses, as buckets are by the bot's */
typedef struct {
    PyObject *venue, *symbol;
    Py_ssize_t slot;
} HeldWay;

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
    double pnl, day_start_pnl, reducing_loss;
    Held *held;
    Py_ssize_t n_buckets, cap_buckets, n_held, cap_held;
    PyObject *on_roll, *on_refuse, *on_loss;
    PyObject *slot_of;    /* dict bot -> index into buckets */
    PyObject *held_of;    /* dict venue -> dict symbol -> index into held */
    Way ways[N_WAYS];
    HeldWay held_ways[N_WAYS];
} Checker;

static int
checker_init(Checker *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"rates_per_s", "max_open", "max_qty", "max_notional", "max_pos", "pos_limits",
                             "require_touch", "dev_up", "dev_down", "submit_kind", "modify_kind",
                             "reducing_loss", "on_roll", "on_refuse", "on_loss", NULL};
    PyObject *pos_limits, *on_roll, *on_refuse, *on_loss;
    int require_touch;
    if (self->slot_of != NULL) {
        PyErr_SetString(PyExc_TypeError, "a Checker is initialised once");
        return -1;
    }
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "(ddd)ddddO!pddlldOOO", kwlist, &self->rates_per_s[0],
                                     &self->rates_per_s[1], &self->rates_per_s[2], &self->max_open, &self->max_qty,
                                     &self->max_notional, &self->max_pos, &PyDict_Type, &pos_limits,
                                     &require_touch, &self->dev_up, &self->dev_down, &self->submit_kind,
                                     &self->modify_kind, &self->reducing_loss, &on_roll, &on_refuse, &on_loss))
        return -1;
    if (!PyCallable_Check(on_roll) || !PyCallable_Check(on_refuse) || !PyCallable_Check(on_loss)) {
        PyErr_SetString(PyExc_TypeError, "on_roll, on_refuse and on_loss must be callable");
        return -1;
    }
    self->require_touch = (char)require_touch;
    Py_XSETREF(self->pos_limits, PyDict_GET_SIZE(pos_limits) ? Py_NewRef(pos_limits) : NULL);
    Py_XSETREF(self->on_roll, Py_NewRef(on_roll));
    Py_XSETREF(self->on_refuse, Py_NewRef(on_refuse));
    Py_XSETREF(self->on_loss, Py_NewRef(on_loss));
    self->slot_of = PyDict_New();
    self->held_of = PyDict_New();
    if (self->slot_of == NULL || self->held_of == NULL)
        return -1;
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
    Py_VISIT(self->on_loss);
    Py_VISIT(self->held_of);
    Py_VISIT(self->pos_limits);
    Py_VISIT(self->slot_of);
    for (int w = 0; w < N_WAYS; w++) {
        Py_VISIT(self->ways[w].bot);
        Py_VISIT(self->held_ways[w].venue);
        Py_VISIT(self->held_ways[w].symbol);
    }
    for (Py_ssize_t k = 0; k < self->n_held; k++) {
        Py_VISIT(self->held[k].venue);
        Py_VISIT(self->held[k].symbol);
    }
    return 0;
}

static int
checker_clear(Checker *self)
{
    Py_CLEAR(self->on_roll);
    Py_CLEAR(self->on_refuse);
    Py_CLEAR(self->on_loss);
    Py_CLEAR(self->held_of);
    Py_CLEAR(self->pos_limits);
    Py_CLEAR(self->slot_of);
    for (int w = 0; w < N_WAYS; w++) {
        Py_CLEAR(self->ways[w].bot);
        Py_CLEAR(self->held_ways[w].venue);
        Py_CLEAR(self->held_ways[w].symbol);
    }
    for (Py_ssize_t k = 0; k < self->n_held; k++) {
        Py_CLEAR(self->held[k].venue);
        Py_CLEAR(self->held[k].symbol);
    }
    return 0;
}

static void
checker_dealloc(Checker *self)
{
    PyObject_GC_UnTrack(self);
    checker_clear(self);
    PyMem_Free(self->buckets);
    PyMem_Free(self->held);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* one more item of `size` bytes at the end of *items (grown by doubling), index[key] = its
 * index; returns the index, or -1 with an exception */
static Py_ssize_t
append_slot(void **items, Py_ssize_t *n, Py_ssize_t *cap, size_t size, PyObject *index, PyObject *key)
{
    if (*n == *cap) {
        Py_ssize_t grown_cap = *cap ? 2 * *cap : 8;
        void *grown = PyMem_Realloc(*items, (size_t)grown_cap * size);
        if (grown == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        *items = grown;
        *cap = grown_cap;
    }
    PyObject *ix = PyLong_FromSsize_t(*n);
    if (ix == NULL)
        return -1;
    int err = PyDict_SetItem(index, key, ix);
    Py_DECREF(ix);
    if (err < 0)
        return -1;
    return (*n)++;
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
        k = append_slot((void **)&self->buckets, &self->n_buckets, &self->cap_buckets, sizeof(Bucket),
                        self->slot_of, bot);
        if (k < 0)
            return NULL;
        Bucket *b = &self->buckets[k];
        for (int i = 0; i < 3; i++)
            b->tokens[i] = self->rates_per_s[i];
        b->last_ns = now;
    }
    Py_XSETREF(way->bot, Py_NewRef(bot));
    way->slot = k;
    return &self->buckets[k];
}

static inline HeldWay *
held_way(Checker *self, PyObject *venue, PyObject *symbol)
{
    return &self->held_ways[(((uintptr_t)venue >> 4) ^ ((uintptr_t)symbol >> 4) * 7) & (N_WAYS - 1)];
}

/* (venue, symbol)'s Held; NULL with no exception when absent and not create */
static Held *
held_of(Checker *self, PyObject *venue, PyObject *symbol, int create)
{
    HeldWay *way = held_way(self, venue, symbol);
    if (way->venue == venue && way->symbol == symbol)
        return &self->held[way->slot];
    Py_ssize_t k = -1;
    PyObject *syms = PyDict_GetItemWithError(self->held_of, venue);
    if (syms == NULL && PyErr_Occurred())
        return NULL;
    if (syms != NULL) {
        PyObject *ix = PyDict_GetItemWithError(syms, symbol);
        if (ix != NULL) {
            k = PyLong_AsSsize_t(ix);
            if (k == -1 && PyErr_Occurred())
                return NULL;
        } else if (PyErr_Occurred()) {
            return NULL;
        }
    }
    if (k < 0) {
        if (!create)
            return NULL;
        if (syms == NULL) {
            syms = PyDict_New();
            if (syms == NULL)
                return NULL;
            int err = PyDict_SetItem(self->held_of, venue, syms);
            Py_DECREF(syms); /* held by held_of */
            if (err < 0)
                return NULL;
        }
        k = append_slot((void **)&self->held, &self->n_held, &self->cap_held, sizeof(Held), syms, symbol);
        if (k < 0)
            return NULL;
        Held *h = &self->held[k];
        h->venue = Py_NewRef(venue);
        h->symbol = Py_NewRef(symbol);
        h->pos = 0.0; /* flat and unmarked, as RiskPlugin's Python state starts one */
        h->mark = 0.0;
        h->marked = 0;
    }
    Py_XSETREF(way->venue, Py_NewRef(venue));
    Py_XSETREF(way->symbol, Py_NewRef(symbol));
    way->slot = k;
    return &self->held[k];
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

/* The check's first part, on the bot's bucket: the day's roll, the rate of the request's kind, and
 * the HALTED state.  Returns a rule (> 0) refused, PASS (a cancel within its rate: passes in every
 * state), GO ON (the limits decide), or -1 with an exception.  With `scratch` (a warm-up,
 * Ledger.check with kind None) it reads what it would read and writes only *scratch: no roll, no
 * bucket made or spent. */
#define PASS 0
#define GO_ON (-2)
static int
gate(Checker *self, PyObject *bot, Py_ssize_t *slot, long kind, long long now, Bucket *scratch)
{
    if (now >= self->day_end_ns && scratch == NULL) {
        PyObject *n = PyLong_FromLongLong(now);
        if (n == NULL)
            return -1;
        PyObject *r = PyObject_CallOneArg(self->on_roll, n);
        Py_DECREF(n);
        if (r == NULL)
            return -1;
        Py_DECREF(r);
    }
    Bucket *b;
    if (*slot >= 0) { /* a ledger's bot: its bucket's index, known since its first check */
        b = &self->buckets[*slot];
    } else if (scratch != NULL) { /* a warm-up before the bot's first check: no bucket is made */
        for (int i = 0; i < 3; i++)
            scratch->tokens[i] = self->rates_per_s[i];
        scratch->last_ns = now;
        b = scratch;
    } else {
        b = bucket_of(self, bot, now);
        if (b == NULL)
            return -1;
        *slot = b - self->buckets; /* buckets are only appended: the index stays the bot's */
    }
    if (scratch != NULL && b != scratch) { /* a warm-up reads the bot's bucket, spends a copy */
        *scratch = *b;
        b = scratch;
    }
    double dt;
    if (now > b->last_ns) {
        dt = (double)(now - b->last_ns) * 1e-9;
        b->last_ns = now;
    } else { /* an older stamp (callers' clocks differ): no refill, and no drain */
        dt = 0.0;
    }
    int i = kind == self->submit_kind ? 0 : kind == self->modify_kind ? 1 : 2;
    double rate = self->rates_per_s[i];
    double tokens = b->tokens[i] + dt * rate;
    if (tokens > rate)
        tokens = rate; /* burst: one second's worth */
    if (tokens < 1.0) {
        b->tokens[i] = tokens;
        return R_MAX_SUBMIT_RATE + i;
    }
    b->tokens[i] = tokens - 1.0;
    if (i == 2) /* CANCEL, CANCEL_ALL: pass in every state, at their own rate */
        return PASS;
    return self->halted ? R_HALTED : GO_ON;
}

/* The check's second part, a submit's or a modify's limits, then the mark to the touch (not in a
 * warm-up, `dry`).  Returns PASS, a rule (> 0) refused, LOSS or LOSS_REDUCES (on_loss is to
 * decide), or -1 with an exception. */
#define LOSS (-3)
#define LOSS_REDUCES (-4)
static int
limits(Checker *self, PyObject *venue, PyObject *symbol, int submit, double side, double price, double qty,
       double position, double open_orders, double bid, double ask, int dry)
{
    if (submit && open_orders >= self->max_open)
        return R_MAX_OPEN_ORDERS;
    if (qty > self->max_qty)
        return R_MAX_ORDER_QTY;
    if (price * qty > self->max_notional)
        return R_MAX_ORDER_NOTIONAL;
    if (self->pos_gate) { /* REDUCING, or a position limit applies */
        int reduces = side != 0.0 && position * side < 0.0 && qty <= fabs(position);
        if (self->reducing) {
            if (!reduces)
                return R_REDUCING_ONLY;
        } else {
            double limit = self->max_pos;
            if (self->pos_limits != NULL) {
                PyObject *v = PyDict_GetItemWithError(self->pos_limits, symbol);
                if (v != NULL) {
                    if (as_double(v, &limit))
                        return -1;
                } else if (PyErr_Occurred()) {
                    return -1;
                }
            }
            double after = position + side * qty;
            if ((after > limit || after < -limit) && !reduces)
                return R_MAX_POSITION;
        }
    }
    if (side > 0.0) {
        if (ask != ask) { /* NaN: the book is not live */
            if (self->require_touch)
                return R_NO_TOUCH;
        } else if (price > ask * self->dev_up) {
            return R_PRICE_FAR_FROM_TOUCH;
        }
    } else if (side < 0.0) {
        if (bid != bid) {
            if (self->require_touch)
                return R_NO_TOUCH;
        } else if (price < bid * self->dev_down) {
            return R_PRICE_FAR_FROM_TOUCH;
        }
    }
    if (position != 0.0 && bid == bid && ask == ask && dry) { /* a warm-up reads the held row, marks nothing */
        HeldWay *way = held_way(self, venue, symbol);
        if (way->venue == venue && way->symbol == symbol) { /* held_of's fast path (a miss would write) */
            volatile double mark = self->held[way->slot].mark;
            (void)mark;
        }
        return PASS;
    }
    if (position != 0.0 && bid == bid && ask == ask) { /* mark the position to the touch */
        double mid = (bid + ask) * 0.5;
        Held *h = held_of(self, venue, symbol, 1);
        if (h == NULL)
            return -1;
        double old = h->mark;
        char marked = h->marked;
        h->mark = mid;
        h->marked = 1;
        if (marked && old != mid && h->pos != 0.0)
            self->pnl += h->pos * (mid - old);
        if (self->reducing || self->pnl - self->day_start_pnl < -self->reducing_loss)
            return side != 0.0 && position * side < 0.0 && qty <= fabs(position) ? LOSS_REDUCES : LOSS;
    }
    return PASS;
}

/* what check() and Ledger.check() answer for an outcome of gate() or limits() */
static PyObject *
answer(Checker *self, int outcome, PyObject *const *fields)
{
    if (outcome == PASS)
        Py_RETURN_NONE;
    if (outcome > 0)
        return refuse(self, outcome, fields);
    if (outcome == LOSS || outcome == LOSS_REDUCES)
        return PyObject_CallOneArg(self->on_loss, outcome == LOSS_REDUCES ? Py_True : Py_False);
    return NULL;
}

/* o's value (an int): the digits read in place for an exact int of up to three digits (the kinds,
 * asset numbers and ns clocks the router passes), so the pass path calls nothing in libpython
 * (with cold caches each such call is a cold GOT entry and cold code); else PyLong_AsLongLong */
static inline long long
int_of(PyObject *o)
{
#if PY_VERSION_HEX < 0x030C0000 && PYLONG_BITS_IN_DIGIT == 30
    if (PyLong_CheckExact(o)) {
        Py_ssize_t size = Py_SIZE(o);
        const digit *d = ((PyLongObject *)o)->ob_digit;
        switch (size) {
        case 0:
            return 0;
        case 1:
            return (long long)d[0];
        case -1:
            return -(long long)d[0];
        case 2:
            return (long long)d[0] | (long long)d[1] << 30;
        case 3:
            if (d[2] < 8) /* below 2**63 */
                return (long long)d[0] | (long long)d[1] << 30 | (long long)d[2] << 60;
        }
    }
#endif
    return PyLong_AsLongLong(o);
}

static long long
now_of(PyObject *o)
{
    long long now = int_of(o);
    if (now == 0) { /* time.time_ns() */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        now = (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
    }
    return now;
}

/* check(bot, venue, symbol, kind, order_id, side, price, qty, time_in_force, order_type, position,
 *       open_orders, best_bid, best_ask, now_ns) -> None (pass) or what on_refuse/on_loss return */
static PyObject *
checker_check(Checker *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != N_FIELDS) {
        PyErr_Format(PyExc_TypeError, "check takes an OrderCheck's %d fields (%zd given)", N_FIELDS, nargs);
        return NULL;
    }
    long long now = now_of(args[14]);
    if (now == -1 && PyErr_Occurred())
        return NULL;
    long kind = PyLong_AsLong(args[3]);
    if (kind == -1 && PyErr_Occurred())
        return NULL;
    Py_ssize_t slot = -1; /* found by the bot's name */
    int outcome = gate(self, args[0], &slot, kind, now, NULL);
    if (outcome != GO_ON)
        return answer(self, outcome, args);
    double side, price, qty, position, open_orders, bid, ask;
    if (as_double(args[5], &side) || as_double(args[6], &price) || as_double(args[7], &qty)
        || as_double(args[10], &position) || as_double(args[11], &open_orders) || as_double(args[12], &bid)
        || as_double(args[13], &ask))
        return NULL;
    outcome = limits(self, args[1], args[2], kind == self->submit_kind, side, price, qty, position, open_orders, bid,
                     ask, 0);
    return answer(self, outcome, args);
}

#include "_riskfast_ledger.h" /* the Ledger type and Checker.ledger: the router's per-bot view */

/* held(venue, symbol) -> (position, mark or None); (0.0, None) if never filled nor marked */
static PyObject *
checker_held(Checker *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "held(venue, symbol)");
        return NULL;
    }
    Held *h = held_of(self, args[0], args[1], 0);
    if (h == NULL) {
        if (PyErr_Occurred())
            return NULL;
        return Py_BuildValue("(dO)", 0.0, Py_None);
    }
    if (!h->marked)
        return Py_BuildValue("(dO)", h->pos, Py_None);
    return Py_BuildValue("(dd)", h->pos, h->mark);
}

/* set_held(venue, symbol, position, mark or None) */
static PyObject *
checker_set_held(Checker *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "set_held(venue, symbol, position, mark)");
        return NULL;
    }
    double pos, mark = 0.0;
    if (as_double(args[2], &pos) || (args[3] != Py_None && as_double(args[3], &mark)))
        return NULL;
    Held *h = held_of(self, args[0], args[1], 1);
    if (h == NULL)
        return NULL;
    h->pos = pos;
    h->mark = mark;
    h->marked = args[3] != Py_None;
    Py_RETURN_NONE;
}

/* positions() -> [(venue, symbol, position)] of every (venue, symbol) seen, in first-seen order */
static PyObject *
checker_positions(Checker *self, PyObject *unused)
{
    PyObject *out = PyList_New(self->n_held);
    if (out == NULL)
        return NULL;
    for (Py_ssize_t k = 0; k < self->n_held; k++) {
        Held *h = &self->held[k];
        PyObject *t = Py_BuildValue("(OOd)", h->venue, h->symbol, h->pos);
        if (t == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        PyList_SET_ITEM(out, k, t);
    }
    return out;
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
     "check(*OrderCheck fields) -> None (pass) or the refusal on_refuse/on_loss gives."},
    {"ledger", (PyCFunction)(void (*)(void))checker_ledger, METH_FASTCALL,
     "ledger(bot, assets) -> a Ledger of the bot over assets [(venue, symbol)], for the router's checks."},
    {"held", (PyCFunction)(void (*)(void))checker_held, METH_FASTCALL,
     "held(venue, symbol) -> (position, mark or None)."},
    {"set_held", (PyCFunction)(void (*)(void))checker_set_held, METH_FASTCALL,
     "set_held(venue, symbol, position, mark or None)."},
    {"positions", (PyCFunction)checker_positions, METH_NOARGS,
     "positions() -> [(venue, symbol, position)] of every (venue, symbol) seen."},
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
    {"pnl", T_DOUBLE, offsetof(Checker, pnl), 0, "cash flow and fees plus positions at their marks"},
    {"day_start_pnl", T_DOUBLE, offsetof(Checker, day_start_pnl), 0, "pnl at the start of the UTC day"},
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
    if (PyType_Ready(&LedgerType) < 0)
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
    Py_INCREF(&LedgerType);
    if (PyModule_AddObject(m, "Ledger", (PyObject *)&LedgerType) < 0) {
        Py_DECREF(&LedgerType);
        goto fail;
    }
    return m;
fail:
    Py_DECREF(m);
    return NULL;
}
