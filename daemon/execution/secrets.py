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

__all__ = ["Credentials", "load_credentials"]


class Credentials:
    """An API key and secret.  ``api_key`` is an identifier (sent in headers) but still masked in
    ``repr``; ``secret`` is only read by ``daemon.signing``."""

    __slots__ = ("_key", "_secret")

    def __init__(self, api_key: str, secret: str) -> None:
        if not api_key or not secret:
            raise ConfigError("credentials: API key and secret must both be non-empty")
        object.__setattr__(self, "_key", api_key)
        object.__setattr__(self, "_secret", secret)

    def __setattr__(self, name, value):
        raise AttributeError("Credentials are read-only")

    @property
    def api_key(self) -> str:
        return self._key

    @property
    def secret(self) -> str:
        return self._secret

    def __repr__(self) -> str:
        return f"Credentials(api_key='{self._key[:4]}...', secret=<hidden>)"

    __str__ = __repr__

    def __reduce__(self):
        raise TypeError("Credentials cannot be pickled (the secret must not leave the process)")

    def __eq__(self, other) -> bool:
        return isinstance(other, Credentials) and other._key == self._key and other._secret == self._secret

    __hash__ = None  # type: ignore[assignment]


def load_credentials(cfg: ExecConfig, environ: Mapping[str, str] | None = None,
                     where: str = "execution") -> Credentials:
    if cfg.credentials_file:
        return _from_file(Path(cfg.credentials_file), where)
    env = os.environ if environ is None else environ
    missing = [name for name in (cfg.api_key_env, cfg.api_secret_env) if not env.get(name)]
    if missing:
        raise ConfigError(f"{where}: environment variable(s) {', '.join(missing)} unset or empty"
                          f" (they must hold the API key and secret)")
    return Credentials(env[cfg.api_key_env], env[cfg.api_secret_env])


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
                          f" (expected api_key = \"...\" and api_secret = \"...\")") from None
    unknown = set(data) - {"api_key", "api_secret"}
    if unknown:
        raise ConfigError(f"{where}: credentials file {path}: unknown key(s) {sorted(unknown)}"
                          f" (known: api_key, api_secret)")
    key, secret = data.get("api_key"), data.get("api_secret")
    if not isinstance(key, str) or not key or not isinstance(secret, str) or not secret:
        raise ConfigError(f"{where}: credentials file {path} must set api_key and api_secret as non-empty strings")
    return Credentials(key, secret)
