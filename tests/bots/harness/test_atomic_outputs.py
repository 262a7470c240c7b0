"""Report, sweep and walk-forward outputs appear whole or not at all (issue 13: never a half-written file)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

import bots.harness.sweep as sweep_mod
import bots.harness.walkforward as wf_mod
import bots.report as report_mod
from bots.atomic_file import atomic_write
from bots.harness.sweep import SWEEP_COLUMNS
from bots.sim.layout import record_dtype
from bots.stats import summarize


class Boom(RuntimeError):
    pass


def _names(folder):
    return sorted(p.name for p in folder.iterdir())


def test_atomic_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "t.json"
    target.write_text("old\n")
    with pytest.raises(Boom):
        with atomic_write(target) as f:
            f.write("new, half")
            f.flush()
            raise Boom
    assert target.read_text() == "old\n" and _names(tmp_path) == ["t.json"]
    with atomic_write(target, "wb") as f:
        f.write(b"whole\n")
        assert target.read_text() == "old\n"  # not visible before the writer is done
    assert target.read_text() == "whole\n" and _names(tmp_path) == ["t.json"]
    with pytest.raises(ValueError, match="mode 'a'"):
        with atomic_write(target, "a"):
            pass


def _half_csv_writer(rows_before_failure):
    """A csv.writer that writes some rows to the file, then fails as a serializer would."""
    real = csv.writer

    def make(f, *args, **kwargs):
        inner = real(f, *args, **kwargs)

        class Half:
            n = 0

            def writerow(self, row):
                if self.n >= rows_before_failure:
                    f.flush()
                    raise Boom("serializer failed mid-write")
                self.n += 1
                return inner.writerow(row)

        return Half()

    return make


def _sweep_rows():
    rows = []
    for k, spread in enumerate((0.1, 0.2, 0.3)):
        rows.append({"params": {"spread": spread}, "wall_s": 0.5, **{c: float(k) for c in SWEEP_COLUMNS}})
    return rows


def test_sweep_outputs_never_half_written(tmp_path, monkeypatch):
    grid = {"spread": [0.1, 0.2, 0.3]}
    written = sweep_mod.write_sweep(tmp_path, _sweep_rows(), grid, "ret", plots=False)
    before = {k: p.read_bytes() for k, p in written.items()}
    assert len(before["csv"].splitlines()) == 4 and json.loads(before["json"])["metric"] == "ret"

    monkeypatch.setattr(sweep_mod.csv, "writer", _half_csv_writer(2))
    with pytest.raises(Boom):
        sweep_mod.write_sweep(tmp_path, _sweep_rows()[::-1], grid, "ret", plots=False)
    monkeypatch.undo()
    assert {k: p.read_bytes() for k, p in written.items()} == before
    assert _names(tmp_path) == ["sweep.csv", "sweep.json"]

    # a fresh folder: a failure leaves no file at all
    fresh = tmp_path / "fresh"
    monkeypatch.setattr(sweep_mod.csv, "writer", _half_csv_writer(1))
    with pytest.raises(Boom):
        sweep_mod.write_sweep(fresh, _sweep_rows(), grid, "ret", plots=False)
    assert _names(fresh) == []


def test_sweep_heatmap_never_half_written(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    import matplotlib.figure

    def savefig_fails(self, fname, **kwargs):
        fname.write(b"\x89PNG half")
        raise Boom("renderer failed")

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", savefig_fails)
    with pytest.raises(Boom):
        sweep_mod.write_sweep(tmp_path, _sweep_rows(), {"spread": [0.1, 0.2, 0.3]}, "ret", plots=True)
    assert _names(tmp_path) == ["sweep.csv", "sweep.json"]  # no heatmap.png, no temporary


def test_walk_forward_outputs_never_half_written(tmp_path, monkeypatch):
    grid = {"spread": [0.1, 0.2]}
    steps = [{"train": f"d{k}", "test": f"d{k + 1}", "params": {"spread": 0.1}, "train_ret": 1.0,
              **{f"test_{c}": 0.0 for c in SWEEP_COLUMNS}} for k in range(3)]
    monkeypatch.setattr(wf_mod.csv, "writer", _half_csv_writer(2))
    with pytest.raises(Boom):
        wf_mod.write_walk_forward(tmp_path, steps, grid, "ret")
    assert _names(tmp_path) == []
    monkeypatch.undo()
    written = wf_mod.write_walk_forward(tmp_path, steps, grid, "ret")
    assert len(written["csv"].read_text().splitlines()) == 4
    assert _names(tmp_path) == ["walkforward.csv", "walkforward.json"]


def _records(n=400):
    r = np.zeros(n, record_dtype)
    r["timestamp"] = 1_704_067_200_000_000_000 + np.arange(n) * 1_000_000_000
    r["price"] = 100.0 + np.sin(np.arange(n) / 20)
    r["position"] = np.where(np.arange(n) % 50 < 25, 1.0, 0.0)
    r["balance"] = -np.cumsum(np.diff(r["position"], prepend=0.0) * r["price"])
    return r


def test_report_files_never_half_written(tmp_path, monkeypatch):
    rec = _records()
    summaries = [summarize(rec)]
    kwargs = dict(records=[rec], summaries=summaries, contract_sizes=[1.0], inverse=[False], plots=False)
    written = report_mod.write_report(tmp_path, meta={"strategy": "x"}, **kwargs)
    before = {k: p.read_bytes() for k, p in written.items()}

    # the stats serializer fails: the earlier stats.json stays (records.npz was replaced whole)
    def dumps_fails(doc, **kw):
        raise Boom("not serializable")

    monkeypatch.setattr(report_mod.json, "dumps", dumps_fails)
    with pytest.raises(Boom):
        report_mod.write_report(tmp_path, meta={"strategy": "y"}, **kwargs)
    monkeypatch.undo()
    assert {k: p.read_bytes() for k, p in written.items()} == before
    assert _names(tmp_path) == ["records.npz", "stats.json"]

    # the records writer fails after writing part of the archive
    def savez_fails(f, **arrays):
        f.write(b"PK\x03\x04 half an archive")
        raise Boom("disk full")

    fresh = tmp_path / "fresh"
    monkeypatch.setattr(report_mod.np, "savez_compressed", savez_fails)
    with pytest.raises(Boom):
        report_mod.write_report(fresh, meta={}, **kwargs)
    assert _names(fresh) == []
