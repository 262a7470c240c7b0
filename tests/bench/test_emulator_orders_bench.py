"""bench/emulator_orders end to end on a small round: an emulator process, the raw websocket client,
every reply (status 200) and every user-stream event counted before the CPU figure is taken."""

import pytest

pytestmark = pytest.mark.timeout(120)


def test_a_small_round_answers_every_request_and_reports_the_emulators_cpu(tmp_path):
    from bench.emulator_orders import ROOT, _extract, _round

    cpu_s, wall_s = _round(ROOT, 200, 16, 1)  # raises if a request is refused or an event is missing
    assert cpu_s > 0 and wall_s > 0
    tree = _extract("HEAD", str(tmp_path))  # --rev: the revision's packages, importable on their own
    assert (tree / "daemon" / "emulator" / "binance_trade.py").is_file()
    assert not (tree / "tests").exists()


def test_a_small_round_with_the_ed25519_key_logs_on_and_sends_unsigned_orders(tmp_path):
    """``--keys ed25519``: the emulator registers the bench's public key and the client's order
    socket logs on once; every unsigned request is still answered (a refused logon or an unsigned
    order it did not accept raises)."""
    from bench.emulator_orders import ROOT, _round
    from bench.orders_keys import ed25519_pems

    pem = tmp_path / "ed25519.pub.pem"
    pem.write_text(ed25519_pems()[1])
    cpu_s, wall_s = _round(ROOT, 200, 16, 1, None, str(pem))
    assert cpu_s > 0 and wall_s > 0
