"""The prefetch helper forked from the parent (bots.sim.prefetch._Forked): it runs the helper's loop
on the parent's state as of the fork, honours claims, reports on its pipe and leaves without the
parent's exit handlers.  The compiles are replaced (before the fork, so the child has them too) by
a ledger file; the child waits for the parent's go where the order matters, so nothing races."""

from __future__ import annotations

import atexit
import os
import subprocess
import time

import pytest

import bots.backtest  # noqa: F401  (declares the entries)
from bots.sim import entries, prefetch

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="no os.fork here")

_STRUCT = 54321  # no real struct type: the entry functions are replaced below


def _script(monkeypatch, tmp_path, fail_at: int | None = None):
    ledger, go = tmp_path / "ledger", tmp_path / "go"

    def compile_entry(index, struct_id):
        if index == 1:  # hold the child here until the parent has claimed what it wants
            deadline = time.monotonic() + 60
            while not go.exists() and time.monotonic() < deadline:
                time.sleep(0.005)
        if index == fail_at:
            raise RuntimeError("compile failed")
        with open(ledger, "a") as f:
            f.write(f"{os.getpid()} {index}\n")

    monkeypatch.setattr(entries, "prefetch_order", lambda indices=None: [1, 2, 3])
    monkeypatch.setattr(entries, "available", lambda index, struct_id: False)
    monkeypatch.setattr(entries, "compile_entry", compile_entry)
    return ledger, go


def test_a_forked_helper_compiles_what_is_not_claimed_and_skips_the_parents_exit_handlers(monkeypatch, tmp_path):
    ledger, go = _script(monkeypatch, tmp_path)
    ran_atexit = tmp_path / "atexit"
    parent = os.getpid()

    def at_exit():  # registered in the parent: a child running it would leave the file
        if os.getpid() != parent:
            ran_atexit.write_text("child ran the parent's exit handlers")

    atexit.register(at_exit)
    helper = prefetch._Helper(_STRUCT, fork=True)
    try:
        assert isinstance(helper.proc, prefetch._Forked) and helper.proc.pid != parent
        assert helper.claim(3)  # the child is held in entry 1: 3 is not started
        go.touch()
        assert helper.proc.wait(timeout=120) == 0
        helper.wait_done(3)  # never done by the helper: returns once its reader saw the end
    finally:
        helper.stop()
        atexit.unregister(at_exit)
    rows = [line.split() for line in ledger.read_text().splitlines()]
    assert rows == [[str(helper.proc.pid), "1"], [str(helper.proc.pid), "2"]]
    assert helper.started == {1, 2} and helper.done == {1, 2} and helper.ended
    assert not ran_atexit.exists()


def test_a_forked_helper_that_fails_ends_and_never_blocks_the_parent(monkeypatch, tmp_path):
    _, go = _script(monkeypatch, tmp_path, fail_at=1)
    go.touch()
    helper = prefetch._Helper(_STRUCT, fork=True)
    try:
        assert helper.proc.wait(timeout=120) == 1
        helper.wait_done(1)  # returns: the helper ended without it
        assert helper.is_done(1) and helper.started == {1} and not helper.done
        assert helper.claim(2)  # the parent compiles it itself
    finally:
        helper.stop()


def test_the_switch_picks_the_fresh_interpreter(monkeypatch):
    monkeypatch.setenv(prefetch.ENV_SWITCH, "spawn")
    helper = prefetch._Helper(_STRUCT)
    try:
        assert isinstance(helper.proc, subprocess.Popen)
    finally:
        helper.stop()
    monkeypatch.delenv(prefetch.ENV_SWITCH)
    monkeypatch.setattr(entries, "prefetch_order", lambda indices=None: [])
    helper = prefetch._Helper(_STRUCT)
    try:
        assert isinstance(helper.proc, prefetch._Forked) and helper.proc.wait(timeout=120) == 0
    finally:
        helper.stop()


@pytest.mark.parametrize("on_before", [True, False])
def test_the_collector_is_off_while_a_started_helper_runs_and_as_found_after(monkeypatch, tmp_path, on_before):
    import gc

    _, go = _script(monkeypatch, tmp_path)
    monkeypatch.setattr(prefetch, "_missing", lambda struct_id: [1])
    monkeypatch.delenv(prefetch.ENV_SWITCH, raising=False)
    for running in list(prefetch._HELPERS.values()):  # a helper of an earlier test in this process
        running.wait_done(-1)  # holds the collector until it ends (no entry -1: returns at its end)
    assert prefetch._COLLECTOR["helpers"] == 0, prefetch._COLLECTOR
    was_on = gc.isenabled()
    (gc.enable if on_before else gc.disable)()
    try:
        prefetch.start(_STRUCT)
        helper = prefetch._HELPERS.pop(_STRUCT)
        try:
            assert not gc.isenabled()  # the child is held in entry 1: the cold run is under way
            go.touch()
            helper.wait_done(99)  # never an entry: returns once the helper ended and was read to the end
            assert gc.isenabled() == on_before
        finally:
            helper.stop()
    finally:
        (gc.enable if was_on else gc.disable)()
