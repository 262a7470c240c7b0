/*
 * plugins/_riskfast_ledger.h: the Ledger type of plugins._riskfast, included once by _riskfast.c
 * after the check's core (gate, limits, answer, refuse, now_of), which it calls; not a header for
 * any other translation unit (its functions are static).  A Ledger is one bot's state for the
 * router's timed check; the Checker (in _riskfast.c) is the plugin's state, shared by its bots.
 */
/* --- Ledger: one registered bot's view for the router ---------------------------------------
 *
 * Router._check_order gathered a check's fields from the bot's Python objects (its assets, its
 * orders dict to count, its positions): with cold caches each object read is a cache miss, and
 * that frame was most of what the router timed (bench/risk_micro.py).  A Ledger keeps what the
 * check needs of one bot, per asset (venue and symbol, open orders, position), in C; the router
 * updates it where it updates its own (a submit, an order's end, a fill: off the timed region) and
 * its check is one call: Ledger.check(asset_no, kind, order_id, side, price, qty, time_in_force,
 * order_type, best_bid, best_ask, now_ns), the same decision as Checker.check on the fields.
 *
 * The router's check starts with cold caches (an order every few ms, other work between), so what
 * it reads is kept close: the asset rows inline after the ledger's head (one allocation, adjacent
 * cache lines), and the bot's bucket by its index in the Checker's array, kept from the first check
 * (no look-up by the bot's name). */
typedef struct {
    PyObject *venue, *symbol;
    long long open_orders;
    double position;
} LedgerAsset;

typedef struct {
    PyObject_VAR_HEAD
    Checker *checker;
    PyObject *bot;
    Py_ssize_t slot;     /* the bot's bucket in checker->buckets; -1 before its first check */
    Py_ssize_t n_assets; /* rows set (all of them once built) */
    LedgerAsset assets[1];
} Ledger;

static PyTypeObject LedgerType;

/* Checker.ledger(bot, assets) -> a Ledger of the bot name over assets, a sequence of (venue, symbol) */
static PyObject *
checker_ledger(Checker *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "ledger(bot, assets)");
        return NULL;
    }
    PyObject *seq = PySequence_Fast(args[1], "assets must be a sequence of (venue, symbol)");
    if (seq == NULL)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    Ledger *l = PyObject_GC_NewVar(Ledger, &LedgerType, n);
    if (l == NULL) {
        Py_DECREF(seq);
        return NULL;
    }
    l->checker = (Checker *)Py_NewRef(self);
    l->bot = Py_NewRef(args[0]);
    l->slot = -1;
    l->n_assets = 0;
    for (Py_ssize_t k = 0; k < n; k++) {
        PyObject *pair = PySequence_Fast_GET_ITEM(seq, k), *venue, *symbol;
        if (!PyArg_ParseTuple(pair, "OO;an asset is (venue, symbol)", &venue, &symbol))
            goto fail;
        l->assets[k].venue = Py_NewRef(venue);
        l->assets[k].symbol = Py_NewRef(symbol);
        l->assets[k].open_orders = 0;
        l->assets[k].position = 0.0;
        l->n_assets = k + 1;
    }
    Py_DECREF(seq);
    PyObject_GC_Track(l);
    return (PyObject *)l;
fail:
    Py_DECREF(seq);
    Py_DECREF(l); /* dealloc untracks: not tracked yet, which PyObject_GC_UnTrack allows */
    return NULL;
}

static int
ledger_traverse(Ledger *self, visitproc visit, void *arg)
{
    Py_VISIT(self->checker);
    Py_VISIT(self->bot);
    for (Py_ssize_t k = 0; k < self->n_assets; k++) {
        Py_VISIT(self->assets[k].venue);
        Py_VISIT(self->assets[k].symbol);
    }
    return 0;
}

static int
ledger_clear(Ledger *self)
{
    Py_CLEAR(self->checker);
    Py_CLEAR(self->bot);
    for (Py_ssize_t k = 0; k < self->n_assets; k++) {
        Py_CLEAR(self->assets[k].venue);
        Py_CLEAR(self->assets[k].symbol);
    }
    return 0;
}

static void
ledger_dealloc(Ledger *self)
{
    PyObject_GC_UnTrack(self);
    ledger_clear(self);
    PyObject_GC_Del(self);
}

static LedgerAsset *
ledger_asset(Ledger *self, PyObject *no)
{
    long long k = int_of(no);
    if (k == -1 && PyErr_Occurred())
        return NULL;
    if (k < 0 || k >= self->n_assets) {
        PyErr_Format(PyExc_IndexError, "asset_no %lld: the ledger has %zd asset(s)", k, self->n_assets);
        return NULL;
    }
    return &self->assets[k];
}

/* check(asset_no, kind, order_id, side, price, qty, time_in_force, order_type, best_bid, best_ask,
 *       now_ns) -> Checker.check's answer on the fields, bot, venue, symbol, position and open
 * orders from the ledger (the fields are built as objects only for a refusal).
 *
 * kind None is a warm-up (router_state.PretradeCheck.warm_check, from the loop's idle time): a
 * submit's decision through the same call and the same code, reading what a real check reads
 * (this ledger, the checker's limits, the bot's bucket), but it spends a copy of the bucket, does
 * not roll the day nor mark the position, calls no Python callable and answers None: no state a
 * real check sees changes.  A real check a few milliseconds later then finds its lines cached
 * (with cold caches most of its duration is misses: bench/risk_micro.py). */
static PyObject *
ledger_check(Ledger *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 11) {
        PyErr_SetString(PyExc_TypeError, "check(asset_no, kind, order_id, side, price, qty, time_in_force, "
                                         "order_type, best_bid, best_ask, now_ns)");
        return NULL;
    }
    Checker *c = self->checker;
    /* the checker's first two lines (limits, state, the buckets' address) and the bucket are
     * fetched at once rather than one after another */
    __builtin_prefetch(c);
    __builtin_prefetch((char *)c + 64);
    if (self->slot >= 0)
        __builtin_prefetch(&c->buckets[self->slot], 1);
    LedgerAsset *a = ledger_asset(self, args[0]);
    if (a == NULL)
        return NULL;
    long long now = now_of(args[10]);
    if (now == -1 && PyErr_Occurred())
        return NULL;
    int dry = args[1] == Py_None; /* a warm-up */
    long long kind = dry ? c->submit_kind : int_of(args[1]);
    if (kind == -1 && PyErr_Occurred())
        return NULL;
    Bucket scratch;
    int outcome = gate(c, self->bot, &self->slot, (long)kind, now, dry ? &scratch : NULL);
    if (outcome == GO_ON || dry) {
        double side, price, qty, bid, ask;
        if (as_double(args[3], &side) || as_double(args[4], &price) || as_double(args[5], &qty)
            || as_double(args[8], &bid) || as_double(args[9], &ask))
            return NULL;
        outcome = limits(c, a->venue, a->symbol, kind == c->submit_kind, side, price, qty, a->position,
                         (double)a->open_orders, bid, ask, dry);
        if (dry)
            return outcome == -1 ? NULL : Py_NewRef(Py_None);
    }
    if (outcome <= 0 && outcome != -1)
        return answer(c, outcome, NULL);
    if (outcome == -1)
        return NULL;
    /* a refusal: the OrderCheck's fields as objects, for on_refuse */
    PyObject *f[N_FIELDS] = {self->bot, a->venue, a->symbol, args[1], args[2], args[3], args[4], args[5], args[6],
                             args[7], NULL, NULL, args[8], args[9], args[10]};
    PyObject *res = NULL;
    if ((f[10] = PyFloat_FromDouble(a->position)) != NULL && (f[11] = PyLong_FromLongLong(a->open_orders)) != NULL)
        res = refuse(c, outcome, f);
    Py_XDECREF(f[10]);
    Py_XDECREF(f[11]);
    return res;
}

/* opened(asset_no, n): n more open orders on the asset (negative: fewer) */
static PyObject *
ledger_opened(Ledger *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "opened(asset_no, n)");
        return NULL;
    }
    LedgerAsset *a = ledger_asset(self, args[0]);
    if (a == NULL)
        return NULL;
    long long n = PyLong_AsLongLong(args[1]);
    if (n == -1 && PyErr_Occurred())
        return NULL;
    a->open_orders += n;
    Py_RETURN_NONE;
}

/* set_position(asset_no, position) */
static PyObject *
ledger_set_position(Ledger *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "set_position(asset_no, position)");
        return NULL;
    }
    LedgerAsset *a = ledger_asset(self, args[0]);
    double pos;
    if (a == NULL || as_double(args[1], &pos))
        return NULL;
    a->position = pos;
    Py_RETURN_NONE;
}

/* view(asset_no) -> (open orders, position): what the next check reads (tests, status) */
static PyObject *
ledger_view(Ledger *self, PyObject *no)
{
    LedgerAsset *a = ledger_asset(self, no);
    if (a == NULL)
        return NULL;
    return Py_BuildValue("(Ld)", a->open_orders, a->position);
}

/* prefetch(): start fetching what the next check reads (this ledger's head and rows, the checker's
 * first lines, the bot's bucket) and return at once, so that a caller can overlap those cache
 * misses with its own work on the request before it calls check() */
static PyObject *
ledger_prefetch(Ledger *self, PyObject *unused)
{
    Checker *c = self->checker;
    __builtin_prefetch(c);
    __builtin_prefetch((char *)c + 64);
    for (Py_ssize_t k = 0; k < self->n_assets && k < 4; k++)
        __builtin_prefetch(&self->assets[k], 1);
    if (self->slot >= 0)
        __builtin_prefetch(&c->buckets[self->slot], 1);
    Py_RETURN_NONE;
}

static PyMethodDef ledger_methods[] = {
    {"check", (PyCFunction)(void (*)(void))ledger_check, METH_FASTCALL,
     "check(asset_no, kind, order_id, side, price, qty, time_in_force, order_type, best_bid, best_ask, now_ns): "
     "Checker.check with the bot, the asset's venue and symbol, position and open orders from the ledger; "
     "kind None: a warm-up (a submit's reads, no state changed, answers None)."},
    {"opened", (PyCFunction)(void (*)(void))ledger_opened, METH_FASTCALL,
     "opened(asset_no, n): n more open orders on the asset (negative: fewer)."},
    {"set_position", (PyCFunction)(void (*)(void))ledger_set_position, METH_FASTCALL,
     "set_position(asset_no, position)."},
    {"view", (PyCFunction)ledger_view, METH_O, "view(asset_no) -> (open orders, position)."},
    {"prefetch", (PyCFunction)ledger_prefetch, METH_NOARGS,
     "prefetch(): start fetching what the next check reads into the caches; returns at once."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject LedgerType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "plugins._riskfast.Ledger",
    .tp_basicsize = offsetof(Ledger, assets),
    .tp_itemsize = sizeof(LedgerAsset),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "One bot's open orders and positions per asset, for its checks (Checker.ledger).",
    .tp_dealloc = (destructor)ledger_dealloc,
    .tp_traverse = (traverseproc)ledger_traverse,
    .tp_clear = (inquiry)ledger_clear,
    .tp_methods = ledger_methods,
};

