"""Replaying Bybit's historical order-book download (``orderbook.500.XRPUSDT``: one snapshot, then
deltas) through the emulator into the daemon's real ring: the ring's rows equal those the data
converter (``bots.data.convert.bybit``) makes from the same file, with each message's ``seq``, and
the books agree at every step, with each other and with the emulator's recorded truth.

Same path as the Binance replay test (``replay_helpers``): emulator over loopback websockets, the
in-process ``Daemon`` publishing into shm, a reader process reading every record.
"""

import asyncio
import zipfile

import orjson
import pytest
from replay_helpers import (
    DATA, HbtBook, as_records, assert_same_rows, assert_update_ids, book_records, read_ring, replay_into_ring,
)

from shm.dtypes import DEPTH_CLEAR_EVENT, DEPTH_SNAPSHOT_EVENT, KIND_MASK

RECORDING = DATA / "bybit" / "xrpusdt-ob500.data.zip"
SYMBOL, DEPTH = "XRPUSDT", 500

pytestmark = [pytest.mark.timeout(300),
              pytest.mark.skipif(not RECORDING.exists(), reason=f"sample data not found at {RECORDING}")]


def converter_messages():
    """(type, seq, u, rows) per recorded message, from the converter's pure per-message function
    (``orderbook_records``), which ``bots.data.convert.bybit.convert`` runs over every line."""
    conv = pytest.importorskip("bots.data.convert.bybit")
    with zipfile.ZipFile(RECORDING) as zf:
        lines = zf.read(zf.namelist()[0]).splitlines()
    out = []
    for line in lines:
        msg = orjson.loads(line)
        out.append((msg["type"], int(msg["data"]["seq"]), int(msg["data"]["u"]), conv.orderbook_records(msg, None)))
    return out


async def bybit_replay(out_path, expected_records: int):
    from daemon.emulator.bybit import BybitEmulator

    emu = await BybitEmulator([SYMBOL], depth=DEPTH, recorded=True).start()
    topic = f"orderbook.{DEPTH}.{SYMBOL}"
    venue = {"name": "bybit-linear", "depth_stream": str(DEPTH), "trade_stream": ""}
    summary, counters = await replay_into_ring(
        emu, venue, SYMBOL, 1, lambda: any(topic in c.topics for c in emu.clients),
        lambda: emu.replay(RECORDING, speed=0), expected_records, 60, out_path)
    return summary, counters, emu.symbols[SYMBOL].history, emu.truth(SYMBOL)


def test_bybit_replay_equals_converter(shm_namespace, tmp_path):
    msgs = converter_messages()
    assert [m[0] for m in msgs].count("snapshot") == 1 and msgs[0][0] == "snapshot" and len(msgs) == 50
    snap_rows = [r for r in msgs[0][3] if r[0] & KIND_MASK == DEPTH_SNAPSHOT_EVENT]
    deltas = msgs[1:]
    expected = 2 + len(snap_rows) + sum(len(rows) for *_, rows in deltas)
    out_path = tmp_path / "ring.npy"
    summary, counters, history, truth = asyncio.run(bybit_replay(out_path, expected))
    assert counters["lines_sent"] == len(msgs)
    ring = read_ring(out_path, summary, counters)
    depth = book_records(ring)
    assert len(depth) == len(ring), "only book rows expected (the file has no trades)"

    # one clear pair carrying the snapshot's seq, the snapshot's rows, then every delta's rows
    assert (depth[:2]["ev"] & KIND_MASK == DEPTH_CLEAR_EVENT).all() and (depth[:2]["ival"] == msgs[0][1]).all()
    assert_same_rows(depth[2:], as_records(snap_rows + [r for *_, rows in deltas for r in rows]), "depth")
    assert_update_ids(depth[2:], [msgs[0][1]] * len(snap_rows) + [seq for _, seq, _, rows in deltas for _ in rows],
                      "depth")

    # same books at every step: the ring's, hftbacktest's from the converter rows, the emulator's truth
    ring_rows = depth.tolist()
    ring_book, hbt = HbtBook(), HbtBook()
    at = 0
    for kind, seq, uid, rows in msgs:
        n = len(rows) if kind == "delta" else 2 + len(snap_rows)
        ring_book.apply(ring_rows[at : at + n])
        at += n
        hbt.apply(rows)
        assert ring_book.levels() == hbt.levels(), f"books differ after u={uid}"
        assert ring_book.levels() == history[seq], f"ring book != emulator truth after u={uid}"
        assert max(ring_book.bids) < min(ring_book.asks)
    assert at == len(depth)
    assert ring_book.levels() == truth
    assert len(ring_book.bids) >= DEPTH and len(ring_book.asks) >= DEPTH
