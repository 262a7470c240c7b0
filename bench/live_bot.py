"""One bot process of ``hftd bench live``: answers every market record with an order request.

    python -m bench.live_bot RING REQUESTS RESPONSES WAIT

The request's ``order_id`` is the record's ``local_ts`` (the bench stamped it with its realtime
clock just before publishing), so the bench knows which record each request answers; its
``request_ts`` is this bot's realtime clock just before the request was written.  The bench daemon
refuses every request, so ``clear_inactive_orders`` keeps the order table small.
"""

from __future__ import annotations

import sys

from numba import njit

from bots.constants import GTC, LIMIT


@njit(cache=True)
def answer_every_record(hbt):
    """Until the bench closes the ring: one buy request per wake-up on market data."""
    n = 0
    while True:
        rc = hbt.wait_next_feed(False, 1_000_000_000)
        if rc == 2:
            fl = hbt.feed_latency(0)
            if fl is not None:
                exch_ts, local_ts = fl  # unpacked: numba cannot index an Optional tuple
                hbt.clear_inactive_orders(0)
                hbt.submit_buy_order(0, local_ts, 100.0, 1.0, GTC, LIMIT, False)
                n += 1
        elif rc != 0:
            return n


def main(argv: list[str]) -> int:
    from bots.live import HashMapMarketDepthLiveBot, LiveAsset, LiveLink

    ring, requests, responses, wait = argv
    link = LiveLink.open([ring], requests, responses, create_requests=False)
    hbt = HashMapMarketDepthLiveBot([LiveAsset().tick_size(0.1).lot_size(0.001)], link, wait=wait)
    n = answer_every_record(hbt)
    hbt.close()
    print(n, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
