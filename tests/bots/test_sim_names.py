"""Issue 14 point 6: the simulator names its codes once.  Order status/request codes, error and
elapse results and event kinds/flags are bots.constants' IntEnums (numba folds a member to its
value), and every column of the config matrices has one named index in bots.sim.layout."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import shm.dtypes as wire
from bots.constants import ElapseResult, ErrorCode, EventFlag, EventKind, Status
from bots.sim import engine as en
from bots.sim import exchange as ex
from bots.sim import layout
from bots.sim import local as lc
from bots.sim import orders as od

BOTS = Path(__file__).resolve().parents[2] / "bots"
SOURCES = sorted([*BOTS.joinpath("sim").glob("*.py"), BOTS / "backtest.py", BOTS / "build.py", BOTS / "depth_views.py"])


def _lines(pattern: str):
    rx = re.compile(pattern)
    for path in SOURCES:
        for no, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            if rx.search(code):
                yield f"{path.relative_to(BOTS.parent)}:{no}: {line.strip()}"


@pytest.mark.parametrize("what, pattern", [
    ("a config column by number", r"cfg_[fi](\(\w+\))?\[[^\],]+,\s*\d"),
    ("the config width as a literal", r"p_cfg_[fi]\),\s*\(bt\.n_assets,\s*\d|N_CFG\s*=\s*\d"),
    ("an event kind by number", r"\bkind\s*==\s*\d"),
    ("an event flag or kind mask by number", r"1\s*<<\s*(28|29|30|31)\b|&\s*0x[fF][fF]\b"),
    ("a status or request code by number", r"\.(status|req)\s*(==|!=|=)\s*\d"),
])
def test_no_bare_numbers_where_a_name_exists(what, pattern):
    found = [ln for ln in _lines(pattern) if not ln.startswith("bots/sim/layout.py")]
    assert not found, f"{what}:\n" + "\n".join(found)


def test_every_config_column_is_named_once_in_layout():
    f_cols = {v for k, v in vars(layout).items() if k.startswith("F_")}
    i_cols = {v for k, v in vars(layout).items() if k.startswith("I_")}
    assert sorted(f_cols) == list(range(8)) and sorted(i_cols) == list(range(8))
    assert layout.N_CFG >= 8


def test_the_kernels_codes_are_the_api_enums():
    assert od.ST_NEW is Status.NEW and od.ST_REPLACED is Status.REPLACED and od.ST_PARTIAL is Status.PARTIALLY_FILLED
    assert lc.ERR_ORDER_NOT_FOUND is ErrorCode.ORDER_NOT_FOUND and ex.ERR_INVALID_ORDER_STATUS is ErrorCode.INVALID_ORDER_STATUS
    assert en.RES_END is ElapseResult.END_OF_DATA and en.RES_RESP is ElapseResult.ORDER_RESPONSE
    assert en.EXCH_EVENT is EventFlag.EXCH and lc.FUNDING_EVENT is EventKind.FUNDING
    # the event codes keep the wire format's values (shm.dtypes is their one definition)
    assert EventKind.FILL == wire.FILL_EVENT and EventFlag.SELL == wire.SELL_EVENT
    assert ex.I_QUEUE is layout.I_QUEUE or ex.I_QUEUE == layout.I_QUEUE
