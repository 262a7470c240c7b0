"""The ``hftd`` command: one console script whose subcommands live in the other packages."""

__all__ = ["HftdError"]


class HftdError(Exception):
    """Root of every error hftd raises on purpose; each package derives its own root from it."""
