"""Request signatures of each venue, in one place: the daemon signs with these and the emulator
verifies with the same functions, so a change of algorithm cannot leave the two disagreeing.

Binance (USD-M, REST and the websocket API) and Bybit v5 (REST and the ``/v5/trade`` websocket
header) use HMAC-SHA256 over a venue-defined payload, hex encoded.  Binance also takes Ed25519 API
keys (the venue holds the public key): the same payload, the signature base64 encoded; only such a
key may ``session.logon`` on the websocket API.  Always sign exactly the bytes that are sent.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from typing import Any, Mapping

from daemon import ConfigError

__all__ = ["hmac_sha256_hex", "hmac_pads", "binance_rest_payload", "binance_ws_payload", "binance_ws_value",
           "bybit_rest_payload", "bybit_ws_auth_payload", "signatures_equal", "ed25519_private_key",
           "ed25519_public_key", "ed25519_sign_b64", "ed25519_verify_b64"]


try:  # CPython's own SHA-256 (3.12+: _sha2): a copy is a memcpy of its state, no OpenSSL object
    from _sha2 import sha256 as _sha256_new
except ImportError:
    try:
        from _sha256 import sha256 as _sha256_new  # 3.11
    except ImportError:  # an interpreter without them: OpenSSL's, through hashlib
        _sha256_new = hashlib.sha256

_BLOCK = 64  # SHA-256's block size: HMAC pads (or first hashes) the key to it
_IPAD = bytes(x ^ 0x36 for x in range(256))
_OPAD = bytes(x ^ 0x5C for x in range(256))

#: secret -> SHA-256 states that have absorbed ``key ^ ipad`` and ``key ^ opad`` (RFC 2104): a
#: signature copies them and hashes only the payload and the inner digest.  OpenSSL's HMAC object,
#: copied per request before, cost ~2x warm and far more with cold caches (its provider layers),
#: once per order on the daemon's loop and per verification in the emulator
_KEYED: dict[str, tuple] = {}
_KEYED_MAX = 64  # a process signs with a handful of secrets; the bound only guards against misuse


def hmac_pads(secret: str) -> tuple:
    """HMAC-SHA256's two SHA-256 states with ``secret``'s inner and outer pads absorbed (RFC 2104):
    copy the inner one, feed it the payload, then the outer one the inner digest.  Cached per secret;
    a signer that also keeps a fixed payload head absorbed copies these (daemon.execution.binance)."""
    pads = _KEYED.get(secret)
    if pads is None:
        if len(_KEYED) >= _KEYED_MAX:
            _KEYED.clear()
        key = secret.encode()
        if len(key) > _BLOCK:
            key = hashlib.sha256(key).digest()
        key = key.ljust(_BLOCK, b"\0")
        pads = _KEYED[secret] = (_sha256_new(key.translate(_IPAD)), _sha256_new(key.translate(_OPAD)))
    return pads


def hmac_sha256_hex(secret: str, payload: str | bytes) -> str:
    inner, outer = hmac_pads(secret)
    h = inner.copy()
    h.update(payload.encode() if isinstance(payload, str) else payload)
    o = outer.copy()
    o.update(h.digest())
    return o.hexdigest()


def signatures_equal(a: str, b: str) -> bool:
    """Constant-time, case-insensitive comparison (Binance: "signature is not case sensitive")."""
    return hmac.compare_digest(a.lower().encode(), b.lower().encode())


def binance_rest_payload(query: str, body: str | bytes = b"") -> bytes:
    """``totalParams``: the query string concatenated directly with the form body (no ``&``)."""
    q = query.encode() if isinstance(query, str) else query
    b = body.encode() if isinstance(body, str) else body
    return q + b


def binance_ws_value(value: Any) -> str:
    """How one websocket-API parameter appears in the signed payload: booleans as ``true``/``false``,
    numbers and strings as written."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def binance_ws_payload(params: Mapping[str, Any]) -> str:
    """Every parameter but ``signature``, sorted by name, joined ``k=v&...``."""
    # a list and an inline bool test, not a generator calling binance_ws_value: the emulator verifies
    # every order with this (~40 % less per call); f"{v}" is str(v) for str, int and float
    out = []
    for k in sorted(params):
        if k != "signature":
            v = params[k]
            out.append(f"{k}={('true' if v else 'false') if v.__class__ is bool else v}")
    return "&".join(out)


def bybit_rest_payload(timestamp_ms: int | str, api_key: str, recv_window_ms: int | str,
                       query_or_body: str | bytes) -> bytes:
    """``timestamp + api_key + recv_window + (query string for GET | raw JSON body for POST)``."""
    tail = query_or_body.encode() if isinstance(query_or_body, str) else query_or_body
    return f"{timestamp_ms}{api_key}{recv_window_ms}".encode() + tail


def bybit_ws_auth_payload(expires_ms: int | str) -> str:
    """The private/trade websocket ``auth`` op signs ``GET/realtime{expires}``."""
    return f"GET/realtime{expires_ms}"


# -- Ed25519 (Binance asymmetric API keys) -------------------------------------------------------

def ed25519_private_key(pem: str | bytes):
    """A PKCS#8 PEM Ed25519 private key (``openssl genpkey -algorithm ed25519``), unencrypted."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        key = load_pem_private_key(pem.encode() if isinstance(pem, str) else pem, password=None)
    except (ValueError, TypeError):
        # the library's message may quote the input: ours names only what was expected
        raise ConfigError("not an unencrypted PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"a PEM private key of type {type(key).__name__}, not Ed25519")
    return key


def ed25519_public_key(pem: str | bytes):
    """The venue's side: the PEM public key registered for an Ed25519 API key."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    try:
        key = load_pem_public_key(pem.encode() if isinstance(pem, str) else pem)
    except (ValueError, TypeError):
        raise ConfigError("not a PEM public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigError(f"a PEM public key of type {type(key).__name__}, not Ed25519")
    return key


def ed25519_sign_b64(private_key, payload: str | bytes) -> str:
    """Base64 of the Ed25519 signature (64 bytes) of ``payload``: what Binance expects in ``signature``
    (REST: URL-encoded, since base64 has ``+``, ``/`` and ``=``)."""
    sig = private_key.sign(payload.encode() if isinstance(payload, str) else payload)
    return base64.b64encode(sig).decode()


def ed25519_verify_b64(public_key, payload: str | bytes, signature_b64: str) -> bool:
    from cryptography.exceptions import InvalidSignature

    try:
        sig = base64.b64decode(signature_b64, validate=True)
    except (binascii.Error, ValueError):
        return False
    try:
        public_key.verify(sig, payload.encode() if isinstance(payload, str) else payload)
    except InvalidSignature:
        return False
    return True
