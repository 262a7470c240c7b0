"""Binance USD-M request authentication in the emulator: API keys of both types, signatures, the
recv window, and the websocket API's session (``session.logon``/``status``/``logout``).

A mixin of ``binance_trade.BinanceTrading``, which owns ``self.credentials`` (API key -> HMAC
secret), ``self.ed25519_keys`` (API key -> the Ed25519 public key the account registered) and the
weight counter ``_limits``.  As on the venue (reference/connectors.md 1.10):

* a request signs every parameter but ``signature`` (REST: the raw query string + body; WS API:
  sorted ``k=v&...``): an HMAC key with hex HMAC-SHA256, an Ed25519 key with base64 Ed25519;
* ``session.logon`` (weight 2) takes Ed25519 keys only; after it, requests on that connection may
  omit ``apiKey`` and ``signature`` (their ``timestamp`` and recv window are still checked);
  ``session.logout`` forgets the key, the connection stays open; a wrong signature is ``-1022``.
  The venue's answer to an HMAC key's logon is not documented: a developer-forum report
  (dev.binance.vision, "Websocket API signatures broken?") got ``-1022``, which is what we answer.
"""

from __future__ import annotations

from typing import Any, Mapping
from urllib.parse import parse_qsl

from aiohttp import web

from daemon.emulator import EmulatorError
from daemon.emulator.binance_wire import ApiError, missing_param
from daemon.emulator.core import Client
from daemon.signing import (binance_rest_payload, binance_ws_payload, ed25519_public_key, ed25519_verify_b64,
                            hmac_sha256_hex, signatures_equal)

__all__ = ["BinanceAuth", "SESSION_METHODS", "load_ed25519_keys"]

SESSION_METHODS = frozenset(("session.logon", "session.status", "session.logout"))
_BAD_SIGNATURE = (400, -1022, "Signature for this request is not valid.")


def load_ed25519_keys(keys: Mapping[str, str] | None, hmac_keys: Mapping[str, str]) -> dict:
    """API key -> Ed25519 public key object, from API key -> PEM public key."""
    out = {}
    for api_key, pem in (keys or {}).items():
        if not isinstance(api_key, str) or not api_key or api_key in hmac_keys:
            raise EmulatorError(f"trading: Ed25519 API key {api_key[:4] if isinstance(api_key, str) else api_key!r}..."
                                f" must be a non-empty string and not also an HMAC key")
        try:
            out[api_key] = ed25519_public_key(pem)
        except ValueError as exc:
            raise EmulatorError(f"trading: the public key of API key {api_key[:4]}...: {exc}") from None
    return out


class BinanceAuth:
    credentials: dict[str, str]
    ed25519_keys: dict[str, Any]

    def _check_time(self, params: Mapping[str, Any]) -> None:
        refusal = self._time_refusal(params)
        if refusal is not None:
            raise refusal

    def _time_refusal(self, params: Mapping[str, Any], server: int | None = None) -> ApiError | None:
        """Why the request's ``timestamp``/``recvWindow`` are refused, or None; ``server``: the
        server's clock (``emu.now_ms()``), read here if not given."""
        try:
            ts = int(params["timestamp"])
        except (KeyError, ValueError, TypeError):
            return missing_param("timestamp")
        try:
            window = int(params.get("recvWindow", 5000))
        except (ValueError, TypeError):
            return ApiError(400, -1100, "Illegal characters found in parameter 'recvWindow'.")
        if not 0 < window <= 60_000:
            return ApiError(400, -1131, "recvWindow must be less than 60000")
        if server is None:
            server = self.emu.now_ms()
        if ts >= server + 1000:
            return ApiError(400, -1021, "Timestamp for this request was 1000ms ahead of the server's time.")
        if server - ts > window:
            return ApiError(400, -1021, "Timestamp for this request is outside of the recvWindow.")
        return None

    def _key_of(self, api_key: str | None):
        """The key that verifies ``api_key``'s signatures: its HMAC secret (str) or Ed25519 public key."""
        if not api_key:
            raise ApiError(401, -2014, "API-key format invalid.")
        secret = self.credentials.get(api_key)
        if secret is None:
            secret = self.ed25519_keys.get(api_key)
            if secret is None:
                raise ApiError(401, -2015, "Invalid API-key, IP, or permissions for action.")
        return secret

    @staticmethod
    def _signature_ok(key, payload: str | bytes, sig: str) -> bool:
        if key.__class__ is str:
            return signatures_equal(hmac_sha256_hex(key, payload), sig)
        return ed25519_verify_b64(key, payload, sig)

    def _auth_rest(self, request: web.Request, body: bytes, security: str) -> tuple[dict, str]:
        api_key = request.headers.get("X-MBX-APIKEY")
        key = self._key_of(api_key)
        query = request.rel_url.raw_query_string
        try:
            text = body.decode()
        except UnicodeDecodeError:
            raise ApiError(400, -1100, "Illegal characters found in a parameter.") from None
        params = dict(parse_qsl(text, keep_blank_values=True))
        params.update(parse_qsl(query, keep_blank_values=True))   # "if a param is in both, the query wins"
        if security != "signed":
            return params, api_key
        sig = params.pop("signature", None)
        if not sig:
            raise missing_param("signature")
        self._check_time(params)
        strip = lambda s: "&".join(p for p in s.split("&") if not p.startswith("signature="))  # noqa: E731
        # the payload is the text as sent (percent-encoded); the signature is compared decoded
        if not self._signature_ok(key, binance_rest_payload(strip(query), strip(text)), sig):
            raise ApiError(*_BAD_SIGNATURE)
        return params, api_key

    def _ws_auth(self, method: str, params: dict, client: Client, now: float | None = None,
                 as_text: bool = False) -> tuple[str, str]:
        """A websocket API request's operation and API key, once its weight is counted and its key,
        timestamp and signature are checked (a request without both apiKey and signature on a
        logged-on connection: its session's key); ``params`` are left as text without the
        signature and the key (the operations read text, as REST gives it: numbers as written,
        booleans true/false).  ``now``: the request's ``time.monotonic()``; ``as_text``: every value
        is text already (``replyparse.ws_request``'s params).  Raises ApiError."""
        entry = self._WS_METHODS.get(method)
        if entry is None:
            raise ApiError(400, -1102 if not method else -1100, f"Unknown method {method!r}.")
        op, weight = entry
        self._limits(weight, now)
        session_key = client.logon_key
        signed = not op.startswith("listen_key")
        if session_key is not None and "signature" not in params and "apiKey" not in params:
            api_key, key = session_key, None  # authenticated at logon: nothing to verify per request
        else:
            api_key = params.get("apiKey")
            key = self._key_of(api_key)
        sig = params.pop("signature", None)
        if signed:
            if not sig and key is not None:
                raise missing_param("signature")
            self._check_time(params)  # on the values as sent (a JSON number timestamp may be 1.7e12)
        # the values become text once, for the signature and the operation: the payload of the text
        # values is that of the values as sent (binance_ws_payload's: booleans true/false, numbers as
        # str() writes them, sorted by name), written here in the same pass (a second loop over the
        # parameters per request was ~a tenth of this check)
        if signed and key is not None:
            parts = []
            for k, v in sorted(params.items()):
                if v.__class__ is not str:
                    v = params[k] = ("true" if v else "false") if v.__class__ is bool else str(v)
                parts.append(f"{k}={v}")
            if not self._signature_ok(key, "&".join(parts), str(sig)):
                raise ApiError(*_BAD_SIGNATURE)
        elif not as_text:
            for k, v in params.items():
                if v.__class__ is not str:
                    params[k] = ("true" if v else "false") if v.__class__ is bool else str(v)
        params.pop("apiKey", None)
        return op, api_key

    def _session(self, client: Client, method: str, params: dict) -> dict:
        """``session.logon``/``status``/``logout`` on ``client``'s connection: the session's state."""
        self._limits(2)
        if method == "session.logon":
            api_key = params.get("apiKey")
            key = self._key_of(api_key)
            sig = params.pop("signature", None)
            if not sig:
                raise missing_param("signature")
            self._check_time(params)
            text = {k: (("true" if v else "false") if v.__class__ is bool else str(v)) for k, v in params.items()}
            if key.__class__ is str or not self._signature_ok(key, binance_ws_payload(text), str(sig)):
                raise ApiError(*_BAD_SIGNATURE)  # an HMAC key cannot log on (see the module's note)
            client.logon_key, client.logon_ms = api_key, self.emu.now_ms()
        elif method == "session.logout":
            client.logon_key = client.logon_ms = None
        authed = client.logon_key
        return {"apiKey": authed, "authorizedSince": client.logon_ms if authed else None,
                "connectedSince": client.connected_ms, "returnRateLimits": client.rate_limits,
                "serverTime": self.emu.now_ms(), "userDataStream": False}
