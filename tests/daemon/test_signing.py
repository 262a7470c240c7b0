"""Signatures against the venues' published test vectors (and what each payload is made of)."""

from daemon import signing as S

BINANCE_SECRET = "2b5eb11e18796d12d88f13dc27dbbd02c2cc51ff7059765ed9821957d82bb4d9"


def test_binance_rest_signature_matches_the_official_vector():
    q = "symbol=BTCUSDT&side=BUY&type=LIMIT&quantity=1&price=9000&timeInForce=GTC&recvWindow=5000&timestamp=1591702613943"
    assert S.hmac_sha256_hex(BINANCE_SECRET, S.binance_rest_payload(q)) == (
        "3c661234138461fcc7a7d8746c6558c9842d4e10870d2ecbedf7777cad694af9")
    # query + body concatenate directly: splitting the same bytes differently signs the same
    assert S.binance_rest_payload(q[:30], q[30:]) == q.encode()


def test_binance_ws_payload_sorts_names_and_leaves_out_the_signature():
    p = {"symbol": "BTCUSDT", "apiKey": "k", "timestamp": 5, "signature": "x", "reduceOnly": False}
    assert S.binance_ws_payload(p) == "apiKey=k&reduceOnly=false&symbol=BTCUSDT&timestamp=5"


def test_bybit_payload_and_case_insensitive_comparison():
    assert S.bybit_rest_payload(1658384314791, "XXXX", 5000, '{"a":1}') == b'1658384314791XXXX5000{"a":1}'
    sig = S.hmac_sha256_hex("s", "x")
    assert S.signatures_equal(sig.upper(), sig)
    assert not S.signatures_equal(sig, S.hmac_sha256_hex("t", "x"))


def test_hmac_equals_the_standard_library_for_every_key_length():
    """The signature is computed from pre-hashed pads (RFC 2104): keys shorter than, equal to and
    longer than SHA-256's 64-byte block (a long key is hashed first), text and bytes payloads."""
    import hashlib
    import hmac

    for n in (0, 1, 32, 63, 64, 65, 200):
        secret = "".join(chr(ord("a") + i % 26) for i in range(n))
        for payload in ("", "symbol=BTCUSDT&timestamp=1", "x" * 500):
            want = hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()
            assert S.hmac_sha256_hex(secret, payload) == want
            assert S.hmac_sha256_hex(secret, payload.encode()) == want
