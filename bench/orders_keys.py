"""``hftd bench orders --keys``: which Binance API key the daemon's session signs with.

* ``hmac`` (default): the HMAC demo pair; every order frame carries its own signature (~24 us of
  HMAC per order on the loop here);
* ``ed25519``: every stand to the emulator uses the bench's Ed25519 key: each order-entry socket
  logs on once (``session.logon``) and order frames go out unsigned;
* ``both``: the default key in the usual runs, then paced runs of each key on fresh stands against
  the same emulator, alternating (HMAC, Ed25519, Ed25519, HMAC, ...: neither always runs first), their
  channel-to-wire samples pooled per key: ``channel_to_wire_hmac_*`` beside ``channel_to_wire_ed25519_*``.

The Ed25519 key is derived from a fixed seed, like the HMAC demo pair: a bench key, never a venue's.
"""

from __future__ import annotations

import hashlib

__all__ = ["KEY_TYPES", "ED_KEY", "ed25519_pems", "credentials", "compare"]

KEY_TYPES = ("hmac", "ed25519", "both")
ED_KEY = "hftd-bench-ed25519-key"
_SEED = hashlib.sha256(b"hftd bench orders: a demo Ed25519 key, never a venue's").digest()


def ed25519_pems() -> tuple[str, str]:
    """(private PEM, public PEM) of the bench's Ed25519 key (the same in every process)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import (Encoding, NoEncryption, PrivateFormat,
                                                              PublicFormat)

    k = Ed25519PrivateKey.from_private_bytes(_SEED)
    return (k.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode(),
            k.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode())


def credentials(key_type: str, hmac_key: str, hmac_secret: str) -> tuple[dict, dict]:
    """(the ``[venue.execution]`` credential keys, the environment they name) for ``key_type``."""
    if key_type == "ed25519":
        return ({"api_key_env": "HFTD_BENCH_KEY", "api_private_key_env": "HFTD_BENCH_PEM"},
                {"HFTD_BENCH_KEY": ED_KEY, "HFTD_BENCH_PEM": ed25519_pems()[0]})
    return ({"api_key_env": "HFTD_BENCH_KEY", "api_secret_env": "HFTD_BENCH_SECRET"},
            {"HFTD_BENCH_KEY": hmac_key, "HFTD_BENCH_SECRET": hmac_secret})


async def compare(stand, args, wire_n: int, rounds: int = 2) -> dict:
    """Paced runs per key on fresh stands (``stand(key_type)`` makes one, not started), alternating;
    the channel-to-wire percentiles of each key's pooled samples, and each run's for the table."""
    from bench.orders_procs import _pct

    pools: dict[str, list[int]] = {"hmac": [], "ed25519": []}
    runs: list[tuple[str, dict]] = []
    order = ("hmac", "ed25519")
    for r in range(rounds):
        for i, key_type in enumerate(order if r % 2 == 0 else order[::-1]):
            st = stand(key_type)
            await st.start()
            try:
                await st.spawn(4)
                base = 90_000_000 + (2 * r + i) * 2_000_000
                await st.phase(4, 100, 0, base, 40_000.0)  # warm: the connection (logged on) in use
                paced = await st.phase(4, wire_n, args.wire_rate / 4, base + 1_000_000, 40_000.0, stagger=True)
                pools[key_type] += st.lat_ns
                runs.append((key_type, paced))
            finally:
                await st.stop()
    out = {}
    for key_type, ns in pools.items():
        ns.sort()
        out[f"channel_to_wire_{key_type}_p50_us"] = _pct(ns, 50) / 1e3
        out[f"channel_to_wire_{key_type}_p99_us"] = _pct(ns, 99) / 1e3
    return {"metrics": out, "runs": runs}
