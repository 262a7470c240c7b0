"""--cluster: the same sweep on a Dask LocalCluster of worker processes gives the local pool's table."""

from __future__ import annotations

import json

import pytest

from bots.errors import ConfigError
from bots.examples import example_config
from bots.harness.config import load_config
from bots.harness.sweep import SWEEP_COLUMNS, run_sweep
from hftd.cli import main

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def cfg(tmp_path_factory):
    from bots.data.synth import SynthConfig, write_synth

    path = tmp_path_factory.mktemp("synth") / "day1.npz"
    write_synth(path, SynthConfig(events=150_000, seed=3))
    return load_config(example_config("grid"), [f'asset.data=["{path}"]'])


@pytest.fixture(scope="module")
def cluster():
    # processes=True: real worker processes, which import bots and load numba's cache themselves
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  silence_logs=40) as lc:
        yield lc


def _pid_of_worker(_):
    import os

    return os.getpid()


def test_cluster_rows_equal_local_pool(cfg, cluster):
    grid = {"half_spread_ticks": [2, 20], "grid_num": [3, 10]}
    local = run_sweep(cfg, grid, jobs=2)
    remote = run_sweep(cfg, grid, cluster=cluster.scheduler_address)
    assert [r["params"] for r in remote] == [r["params"] for r in local]
    for a, b in zip(local, remote):
        for key in SWEEP_COLUMNS:
            assert a[key] == b[key], (a["params"], key)
    assert len({r["trades"] for r in remote}) > 1
    with distributed.Client(cluster.scheduler_address) as client:
        pids = set(client.run(_pid_of_worker, None).values())
    import os

    assert os.getpid() not in pids  # the runs happened in the cluster's processes, not here


def test_cluster_cli_table(cfg, cluster, tmp_path, capsys):
    out = tmp_path / "sw"
    data = cfg.assets[0].data[0]
    assert main(["backtest", "--example", "grid", "--data", data, "--sweep", "half_spread_ticks=2,20",
                 "--cluster", cluster.scheduler_address, "-o", str(out), "--quiet", "--no-plots"]) == 0
    text = capsys.readouterr().out
    assert "2 runs" in text and "Dask cluster" in text
    assert len(json.loads((out / "sweep.json").read_text())["rows"]) == 2


def test_unreachable_cluster_is_a_clear_error(cfg):
    with pytest.raises(ConfigError, match="cannot reach a Dask scheduler"):
        from bots.harness.cluster import run_on_cluster

        run_on_cluster("tcp://127.0.0.1:9", cfg, [{"grid_num": 3}], [], timeout_s=1.0)
