"""The cold-start split of the engine's entries between this process and the prefetch helper
(bots.sim.prefetch): every prefetched entry is compiled exactly once, by one side, and the helper's
order keeps the parent busy while the helper finishes.  Compiles are replaced by a ledger, so these
run in milliseconds and do not depend on timing: the helper's progress is counted in the parent's
compile steps (one step per cold CPU second, as profiled), not in seconds."""

from __future__ import annotations

import os

import pytest

import bots.backtest  # noqa: F401  (declares the entries and their prefetch order)
from bots.sim import entries, prefetch

_STRUCT = 12345  # no real struct type: available/compile_entry are replaced below

#: cold compile cost per entry in steps, rounded from the bench's profile (CPU seconds)
_COST = {entries.E_EXCH_ROWS: 10, entries.E_RECEIVE: 3, entries.E_CATCH_UP: 1, entries.E_BOT_SIDE: 4,
         entries.E_SUBMIT: 1, entries.E_CANCEL: 1}

#: the order the grid bot's first elapse and requests reach the entries in the parent
_CALLS = [entries.E_EXCH_ROWS, entries.E_BOT_SIDE, entries.E_SUBMIT, entries.E_CATCH_UP,
          entries.E_RECEIVE, entries.E_CANCEL]


class _ScriptedHelper:
    """The helper's loop (as prefetch._main runs it) advanced one step per parent compile step."""

    def __init__(self, order: list[int], ledger: list) -> None:
        self.order, self.ledger = order, ledger
        self.started: set[int] = set()
        self.done: set[int] = set()
        self.claimed: set[int] = set()
        self.current, self.left, self.ended = None, 0, False
        self.idle_steps = 0  # steps the parent spent waiting with nothing to compile
        self._next()

    def _next(self) -> None:
        for index in self.order:
            if index not in self.claimed and index not in self.started and index not in self.done:
                self.started.add(index)
                self.current, self.left = index, _COST[index]
                return
        self.current, self.ended = None, True

    def step(self) -> None:
        if self.current is None:
            return
        self.left -= 1
        if self.left == 0:
            self.done.add(self.current)
            self.ledger.append(("helper", self.current))
            self._next()

    # the parent's side of prefetch._Helper
    def claim(self, index: int) -> bool:
        if index in self.started or index in self.claimed:
            return index in self.claimed
        self.claimed.add(index)
        return True

    def is_done(self, index: int) -> bool:
        return index in self.done or self.ended

    def wait_done(self, index: int) -> None:
        while not self.is_done(index):
            self.idle_steps += 1
            self.step()


def _run_parent(monkeypatch, order: list[int], strategy_steps: int):
    ledger: list = []
    helper = _ScriptedHelper(order, ledger)
    compiled_here: set[int] = set()

    def available(index, struct_id):
        return index in compiled_here or index in helper.done

    def compile_entry(index, struct_id):
        assert not available(index, struct_id), f"entry {index} compiled twice"
        for _ in range(_COST[index]):
            helper.step()
        compiled_here.add(index)
        ledger.append(("here", index))

    monkeypatch.setattr(entries, "available", available)
    monkeypatch.setattr(entries, "compile_entry", compile_entry)
    monkeypatch.setattr(entries, "prefetch_order", lambda indices=None: list(order))
    monkeypatch.setitem(prefetch._HELPERS, _STRUCT, helper)
    for _ in range(strategy_steps):  # the parent compiles the strategy and elapse first
        helper.step()
    for index in _CALLS:  # what the engine does at an entry's first call
        prefetch.wait_for(index, _STRUCT)
        if not available(index, _STRUCT):
            compile_entry(index, _STRUCT)
    return ledger, helper


def test_prefetch_order_puts_receive_right_after_the_rows():
    order = entries.prefetch_order()
    assert sorted(order) == sorted(_COST), order
    assert order[:3] == [entries.E_EXCH_ROWS, entries.E_RECEIVE, entries.E_CATCH_UP], order


@pytest.mark.parametrize("strategy_steps", [0, 2, 4, 5, 6, 9, 20])
def test_every_entry_compiled_once_and_the_parent_takes_catch_up(monkeypatch, strategy_steps):
    ledger, helper = _run_parent(monkeypatch, entries.prefetch_order(), strategy_steps)
    compiled = [index for _, index in ledger]
    assert sorted(compiled) == sorted(_COST), ledger  # none missed, none twice
    by = dict((index, side) for side, index in ledger)
    assert by[entries.E_EXCH_ROWS] == "helper"
    if 4 <= strategy_steps <= 6:
        # the profile's case (build, strategy and elapse ~5.5 s): the parent is done with the bot
        # side about when the helper is with the rows; it compiles catch-up beside the helper's
        # receive instead of waiting for both (earlier it takes both itself, later the helper does)
        assert by[entries.E_RECEIVE] == "helper" and by[entries.E_CATCH_UP] == "here", ledger
        assert helper.idle_steps <= _COST[entries.E_RECEIVE] - _COST[entries.E_CATCH_UP], ledger


def test_the_old_order_left_the_parent_waiting_longer(monkeypatch):
    old = [entries.E_EXCH_ROWS, entries.E_CATCH_UP, entries.E_RECEIVE, entries.E_BOT_SIDE,
           entries.E_SUBMIT, entries.E_CANCEL]
    _, before = _run_parent(monkeypatch, old, 5)
    monkeypatch.undo()
    _, after = _run_parent(monkeypatch, entries.prefetch_order(), 5)
    assert after.idle_steps < before.idle_steps, (after.idle_steps, before.idle_steps)


def test_helper_skips_claimed_and_cached_entries_and_compiles_the_rest_once(monkeypatch, capsys):
    order = entries.prefetch_order()
    claimed = {entries.E_CANCEL, entries.E_CATCH_UP}
    cached = {entries.E_SUBMIT}
    compiled: list[int] = []
    monkeypatch.setattr(entries, "available", lambda index, struct_id: index in cached)
    monkeypatch.setattr(entries, "compile_entry", lambda index, struct_id: compiled.append(index))
    expected = [i for i in order if i not in claimed and i not in cached]
    read_fd, write_fd = os.pipe()
    # both claims in one write: the helper must see the second as well (a buffered reader did not);
    # then the parent's answers to the helper's requests for the others
    os.write(write_fd, b"".join(b"claim %d\n" % i for i in sorted(claimed)))
    os.write(write_fd, b"".join(b"go %d\n" % i for i in expected))
    os.close(write_fd)
    with os.fdopen(read_fd) as stdin:
        monkeypatch.setattr("sys.stdin", stdin)
        assert prefetch._main([str(_STRUCT)]) == 0
    assert compiled == expected
    lines = capsys.readouterr().out.split()
    assert lines == [w for i in expected for w in ("want", str(i), "start", str(i), "done", str(i))]


def test_a_helper_without_an_answer_leaves_the_entry_to_the_parent(monkeypatch, capsys):
    compiled: list[int] = []
    monkeypatch.setattr(entries, "available", lambda index, struct_id: False)
    monkeypatch.setattr(entries, "compile_entry", lambda index, struct_id: compiled.append(index))
    read_fd, write_fd = os.pipe()
    os.close(write_fd)  # the parent is gone: every request ends unanswered
    with os.fdopen(read_fd) as stdin:
        monkeypatch.setattr("sys.stdin", stdin)
        assert prefetch._main([str(_STRUCT)]) == 0
    assert compiled == []
    assert capsys.readouterr().out.split()[::2] == ["want"] * len(entries.prefetch_order())


class _Pipe:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def write(self, text: str) -> None:
        self.lines.append(text.strip())

    def flush(self) -> None:
        pass


def _arbiter():
    """The parent's side of a helper (prefetch._Helper) without a process: what it writes is kept."""
    import threading

    helper = prefetch._Helper.__new__(prefetch._Helper)
    helper.proc = type("Proc", (), {"stdin": _Pipe()})()
    helper.started, helper.done, helper.claimed, helper.log = set(), set(), set(), []
    helper.cond, helper.ended = threading.Condition(), False
    return helper


def test_the_helpers_request_and_the_parents_claim_give_an_entry_to_one_side_in_either_order():
    asked_first = _arbiter()
    asked_first._answer(5)  # the helper's "want 5" read first
    assert not asked_first.claim(5)  # the parent then waits for the helper's "done 5"
    assert asked_first.proc.stdin.lines == ["go 5"] and asked_first.started == {5}
    claimed_first = _arbiter()
    assert claimed_first.claim(5)
    claimed_first._answer(5)  # a request crossing the claim in the pipes is refused
    assert claimed_first.proc.stdin.lines == ["claim 5", "claim 5"] and not claimed_first.started
