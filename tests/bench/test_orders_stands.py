"""bench orders: stands that share one emulator give their orders client ids of their own."""

import asyncio

import pytest

from bench import orders

pytestmark = pytest.mark.timeout(60)


def test_each_stand_has_client_ids_of_its_own(tmp_path):
    """Each stand starts a fresh order-id journal (generation 1): without a prefix of its own the
    second stand on an emulator reused the first one's client ids, and a query by client id (the
    session's reconciliation) could be answered with the first stand's closed order."""
    async def body():
        heads = []
        for _ in range(2):
            st = orders._Stand(str(tmp_path), "memory", "thread", "backoff")
            await st.start()
            try:
                heads.append(st.orderids.new("bench0", 0, 1, orders.VENUE, orders.SYMBOL).client_id)
            finally:
                await st.stop()
        assert heads[0] != heads[1]

    asyncio.run(body())
