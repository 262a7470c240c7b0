"""API credentials: only from environment variables or a credentials file readable by its owner alone.

A ``Credentials`` never shows its secret: not in ``repr``/``str``, not in pickles, not in the
messages of the errors raised here (they name the variable or file, never a value).
"""

from __future__ import annotations

import os
import stat
import tomllib
from pathlib import Path
from typing import Mapping

from daemon import ConfigError
from daemon.execution.config import ExecConfig
from daemon.signing import ed25519_private_key, ed25519_sign_b64, hmac_sha256_hex

__all__ = ["Credentials", "load_credentials"]


class Credentials:
    """An API key and its signing key: an HMAC ``secret``, or (Binance) an Ed25519 private key in PEM
    (``private_key_pem``; the venue holds its public key, and a websocket API connection can
    ``session.logon`` once instead of signing every request).  ``api_key`` is an identifier (sent in
    headers) but still masked in ``repr``; the signing key is only used by ``sign``/``secret``."""

    __slots__ = ("_key", "_secret", "_ed25519")

    def __init__(self, api_key: str, secret: str = "", *, private_key_pem: str = "") -> None:
        if not api_key or bool(secret) == bool(private_key_pem):
            raise ConfigError("credentials: a non-empty API key and exactly one of an HMAC secret or an"
                              " Ed25519 private key (PEM)")
        object.__setattr__(self, "_key", api_key)
        object.__setattr__(self, "_secret", secret)
        # parsed once: a signature is then one call; the PEM text itself is not kept
        object.__setattr__(self, "_ed25519", ed25519_private_key(private_key_pem) if private_key_pem else None)

    def __setattr__(self, name, value):
        raise AttributeError("Credentials are read-only")

    @property
    def api_key(self) -> str:
        return self._key

    @property
    def is_ed25519(self) -> bool:
        return self._ed25519 is not None

    @property
    def secret(self) -> str:
        """The HMAC secret (signing code of venues without Ed25519 keys reads it directly)."""
        if self._ed25519 is not None:
            raise ConfigError("credentials: this API key is an Ed25519 key; it has no HMAC secret")
        return self._secret

    def sign(self, payload: str | bytes) -> str:
        """Binance's ``signature`` of ``payload``: HMAC-SHA256 hex, or Ed25519 base64."""
        if self._ed25519 is not None:
            return ed25519_sign_b64(self._ed25519, payload)
        return hmac_sha256_hex(self._secret, payload)

    def __repr__(self) -> str:
        kind = "ed25519" if self._ed25519 is not None else "hmac"
        return f"Credentials(api_key='{self._key[:4]}...', {kind}=<hidden>)"

    __str__ = __repr__

    def __reduce__(self):
        raise TypeError("Credentials cannot be pickled (the secret must not leave the process)")

    def __eq__(self, other) -> bool:
        if not isinstance(other, Credentials) or other._key != self._key or other._secret != self._secret:
            return False
        if (self._ed25519 is None) != (other._ed25519 is None):
            return False
        return self._ed25519 is None or _raw_public(self._ed25519) == _raw_public(other._ed25519)

    __hash__ = None  # type: ignore[assignment]


def _raw_public(key) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def load_credentials(cfg: ExecConfig, environ: Mapping[str, str] | None = None,
                     where: str = "execution") -> Credentials:
    if cfg.credentials_file:
        return _from_file(Path(cfg.credentials_file), where)
    env = os.environ if environ is None else environ
    signing_env = cfg.api_secret_env or cfg.api_private_key_env
    missing = [name for name in (cfg.api_key_env, signing_env) if not env.get(name)]
    if missing:
        raise ConfigError(f"{where}: environment variable(s) {', '.join(missing)} unset or empty"
                          f" (they must hold the API key and its {'secret' if cfg.api_secret_env else 'private key'})")
    if cfg.api_secret_env:
        return Credentials(env[cfg.api_key_env], env[cfg.api_secret_env])
    return _ed25519(env[cfg.api_key_env], env[signing_env], f"{where}: environment variable {signing_env}")


def _ed25519(api_key: str, pem: str, what: str) -> Credentials:
    try:
        return Credentials(api_key, private_key_pem=pem)
    except ConfigError as exc:  # names what was expected, never the text
        raise ConfigError(f"{what}: {exc}") from None


def _from_file(path: Path, where: str) -> Credentials:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        raise ConfigError(f"{where}: credentials file {path} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"{where}: credentials file {path} cannot be opened ({exc.strerror})") from None
    try:
        st = os.fstat(fd)  # checked on the open file, so it cannot be swapped after the check
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(f"{where}: credentials file {path} is not a regular file")
        if st.st_mode & 0o077:
            raise ConfigError(f"{where}: credentials file {path} has mode {stat.S_IMODE(st.st_mode):04o};"
                              f" refused: it must be readable by its owner only (chmod 600)")
        if st.st_uid != os.geteuid():
            raise ConfigError(f"{where}: credentials file {path} is owned by uid {st.st_uid}, not by this user")
        with os.fdopen(fd, "rb") as fh:
            fd = -1
            raw = fh.read()
    finally:
        if fd >= 0:
            os.close(fd)
    try:
        data = tomllib.loads(raw.decode())
    except (UnicodeDecodeError, tomllib.TOMLDecodeError):
        # the parser's message quotes the offending line, which may be the secret
        raise ConfigError(f"{where}: credentials file {path} is not valid TOML"
                          f" (expected api_key = \"...\" and api_secret = \"...\" or"
                          f" ed25519_private_key = \"\"\"PEM\"\"\")") from None
    unknown = set(data) - {"api_key", "api_secret", "ed25519_private_key"}
    if unknown:
        raise ConfigError(f"{where}: credentials file {path}: unknown key(s) {sorted(unknown)}"
                          f" (known: api_key, api_secret, ed25519_private_key)")
    key, secret, pem = data.get("api_key"), data.get("api_secret"), data.get("ed25519_private_key")
    if (not isinstance(key, str) or not key or (secret is None) == (pem is None)
            or not isinstance(secret if pem is None else pem, str) or not (secret or pem)):
        raise ConfigError(f"{where}: credentials file {path} must set api_key and one of api_secret (HMAC) or"
                          f" ed25519_private_key (PEM) as non-empty strings")
    if pem is not None:
        return _ed25519(key, pem, f"{where}: credentials file {path}: ed25519_private_key")
    return Credentials(key, secret)
