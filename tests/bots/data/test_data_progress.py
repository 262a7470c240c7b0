"""The Databento and L3-to-L2 conversions draw the converters' progress line (issue 13: a progress bar
for every source), and the line changes nothing in their output."""

from __future__ import annotations

import functools
import re

import numpy as np
import pytest

import bots.data.l3_to_l2 as l3_mod
from bots.data.convert._common import Progress
from bots.data.io import save_events
from bots.data.synth import SynthConfig, generate_events

_LINE = re.compile(r"\r([^\r]+?): ([\d,.]+)/([\d,.]+) MB read, ([\d,]+) rows")


def _shown(err: str) -> list[tuple[str, float, float, int]]:
    return [(m[1], float(m[2].replace(",", "")), float(m[3].replace(",", "")), int(m[4].replace(",", "")))
            for m in _LINE.finditer(err)]


def test_l3_to_l2_progress(tmp_path, monkeypatch, capsys):
    rows = generate_events(SynthConfig(events=20_000, seed=5, l3=True))
    path = save_events(tmp_path / "l3.npz", rows, compress=True)
    quiet = l3_mod.l3_to_l2([path], 0.01, 0.001)
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(l3_mod, "Progress", functools.partial(Progress, interval_s=0.0))
    monkeypatch.setattr(l3_mod, "_PROGRESS_ROWS", 4096)
    shown = l3_mod.l3_to_l2([path], 0.01, 0.001, progress=True)
    assert shown.tobytes() == quiet.tobytes()
    err = capsys.readouterr().err
    lines = _shown(err)
    assert len(lines) == len(rows) // 4096, err
    total_mb = rows.nbytes / 1e6  # of the rows uncompressed, not of the compressed file
    assert all(label == "l3-to-l2" for label, *_ in lines)
    assert all(total == pytest.approx(total_mb, abs=0.1) for _, _, total, _ in lines)
    done = [d for _, d, _, _ in lines]
    assert done == sorted(done) and done[-1] <= total_mb + 0.05
    out_rows = [r for *_, r in lines]
    assert out_rows == sorted(out_rows) and 0 < out_rows[-1] <= len(quiet) * 2
    assert err.endswith("\n")  # closed: the next message starts on its own line


def test_databento_progress(tmp_path, monkeypatch, capsys):
    dbn = pytest.importorskip("databento_dbn")
    from bots.data.convert import databento
    from tests.bots.data.test_data_databento import _day, _msg, _write, T0, S

    msgs = _day() + [_msg(T0 + 10_000 + k, T0 + 10_100 + k, "ADD", "BID", (4000 + k % 50) * S, 1, 1000 + k)
                     for k in range(60_000)]  # about 3.4 MB: several 1 MB chunks
    path = _write(tmp_path / "big.mbo.dbn", msgs)
    quiet = databento.convert(path)
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(databento, "Progress", functools.partial(Progress, interval_s=0.0))
    shown = databento.convert(path, progress=True)
    assert shown.tobytes() == quiet.tobytes()
    err = capsys.readouterr().err
    lines = _shown(err)
    size_mb = path.stat().st_size / 1e6
    assert len(lines) >= 3 and all(label == "convert big.mbo.dbn" for label, *_ in lines), err
    assert all(total == pytest.approx(size_mb, abs=0.05) for _, _, total, _ in lines)
    assert lines[-1][1] == pytest.approx(size_mb, abs=0.05) and lines[-1][3] == len(msgs)
    assert [r for *_, r in lines] == sorted(r for *_, r in lines) and lines[0][3] < len(msgs)
    assert err.endswith("\n") and dbn is not None
