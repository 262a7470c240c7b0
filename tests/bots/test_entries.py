"""The engine's entries (bots.sim.entries) are called through the backtest's table, never linked into
a strategy; the helper that compiles them on a cold start (bots.sim.prefetch) leaves a warm cache
alone and never keeps a caller waiting once it has ended."""

from __future__ import annotations

import numpy as np
from numba import njit

import bots
from bots.sim import entries, prefetch
from shm.dtypes import event_dtype


#: (ev, exch_ts, local_ts, px): a bid at 99, an ask at 101, the bid moving to 98 later
_ROWS = [((3 << 30) | (1 << 29) | 4, 0, 1, 99.0), ((3 << 30) | (1 << 28) | 4, 0, 1, 101.0),
         ((3 << 30) | (1 << 29) | 1, 100, 101, 98.0)]


def _backtest():
    ev = np.zeros(len(_ROWS), event_dtype)
    for i, (kind, exch_ts, local_ts, px) in enumerate(_ROWS):
        ev[i]["ev"], ev[i]["exch_ts"], ev[i]["local_ts"], ev[i]["px"], ev[i]["qty"] = kind, exch_ts, local_ts, px, 1.0
    asset = (bots.BacktestAsset().data([ev]).tick_size(0.5).lot_size(0.5).roi_lb(0).roi_ub(200)
             .constant_order_latency(1, 1).linear_asset(1.0))
    return bots.ROIVectorMarketDepthBacktest([asset])


@njit
def _table(hbt):
    return hbt.entries.copy(), hbt.struct_id


def _quote_and_run(hbt):
    hbt.submit_buy_order(0, 1, 98.0, 1.0, 1, 0, False)
    hbt.cancel(0, 1, False)
    while hbt.elapse(10) == 0:
        pass
    return hbt.current_timestamp


def test_a_strategy_links_no_engine_code():
    hbt = _backtest()
    strategy = njit(_quote_and_run)
    assert strategy(hbt) > 0
    (cres,) = strategy.overloads.values()
    defined = [fn.name for fn in cres.library._final_module.functions if not fn.is_declaration]
    engine = [name for name in defined
              if any(part in name for part in ("_goto_split", "_exch_rows", "_bot_side", "ack_new", "6submit"))]
    assert defined and not engine, engine
    # the table holds the entries the run called; the next backtest starts with them filled in
    table, _ = _table(hbt)
    used = [entries.E_ELAPSE, entries.E_EXCH_ROWS, entries.E_BOT_SIDE, entries.E_SUBMIT, entries.E_CANCEL]
    assert all(table[i] != 0 for i in used), table
    hbt.close()
    again = _backtest()
    assert [_table(again)[0][i] for i in used] == [table[i] for i in used]
    again.close()


def test_no_helper_for_a_warm_cache_and_an_ended_helper_never_blocks():
    hbt = _backtest()
    njit(_quote_and_run)(hbt)  # every prefetched entry is now compiled (and cached)
    struct_id = int(_table(hbt)[1])
    running = prefetch._HELPERS.get(struct_id)
    if running is not None:  # the run may end before the helper stored the entries the run never called
        running.wait_done(-1)  # no entry has that index: returns when the helper ended
    assert not prefetch._missing(struct_id)
    prefetch._HELPERS.pop(struct_id, None)
    prefetch.start(struct_id)
    assert struct_id not in prefetch._HELPERS
    # a helper run over a warm cache finds nothing to compile and ends; waiting on it returns
    helper = prefetch._Helper(struct_id)
    try:
        helper.proc.wait(timeout=300)
        helper.wait_done(entries.E_EXCH_ROWS)
        assert helper.is_done(entries.E_EXCH_ROWS) and not helper.started
    finally:
        helper.stop()
    hbt.close()


def test_an_entry_compiles_without_the_cycle_collector_and_leaves_it_as_found(monkeypatch):
    import gc
    import sys

    from bots.sim import jit

    seen = []

    class _Kernel:  # stands for the entry's dispatcher: records the collector's state at its compile
        overloads = {}

        def compile(self, sig):
            seen.append(gc.isenabled())
            # called from on_deep_stack's frame (its caller's locals fill a chunk of their own)
            assert sys._getframe(1).f_code.co_nlocals >= jit._DEEP_LOCALS
            self.overloads[sig] = type("Cres", (), {"signature": type("S", (), {"return_type": restype})})

    restype = entries._ENTRIES[entries.E_CATCH_UP].restype
    fake = entries.Entry("fake", _Kernel(), entries._ENTRIES[entries.E_CATCH_UP].argtypes, restype)
    monkeypatch.setitem(entries._ENTRIES, entries.E_CATCH_UP, fake)
    monkeypatch.setattr(entries, "available", lambda index, struct_id: False)  # a compile, not a cache load
    was_on = gc.isenabled()
    try:
        gc.enable()
        entries.compile_entry(entries.E_CATCH_UP, 0)
        assert seen == [False] and gc.isenabled()
        gc.disable()  # a caller that turned it off (the forked helper) keeps it off
        entries.compile_entry(entries.E_CATCH_UP, 0)
        assert seen == [False, False] and not gc.isenabled()
    finally:
        (gc.enable if was_on else gc.disable)()


def test_on_deep_stack_calls_from_a_frame_of_its_own_size_and_passes_results_and_errors():
    import sys

    import pytest

    from bots.sim import jit

    def probe(a, b):
        return a + b, sys._getframe(1).f_code.co_nlocals

    assert jit.on_deep_stack(probe, 1, 2) == (3, 2 + jit._DEEP_LOCALS)
    with pytest.raises(ValueError):
        jit.on_deep_stack(int, "x")


def test_an_entry_in_numbas_cache_loads_without_the_deep_frame(monkeypatch):
    """A load from the cache recurses little: the deep frame (a code object with 65k local names,
    ~7 MB of a warm small-file run's peak RSS) is for compiles only."""
    import sys

    from bots.sim import jit

    depth = []

    class _Kernel:
        overloads = {}

        def compile(self, sig):
            depth.append(sys._getframe(1).f_code.co_nlocals)
            self.overloads[sig] = type("Cres", (), {"signature": type("S", (), {"return_type": restype})})

    restype = entries._ENTRIES[entries.E_CATCH_UP].restype
    fake = entries.Entry("fake", _Kernel(), entries._ENTRIES[entries.E_CATCH_UP].argtypes, restype)
    monkeypatch.setitem(entries._ENTRIES, entries.E_CATCH_UP, fake)
    monkeypatch.setattr(entries, "available", lambda index, struct_id: True)
    monkeypatch.setattr(jit, "_deep_call", None)
    entries.compile_entry(entries.E_CATCH_UP, 0)
    assert depth and depth[0] < jit._DEEP_LOCALS
    assert jit._deep_call is None  # never built
