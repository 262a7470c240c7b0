"""Plugins: pluggy hooks at the daemon's seams, and the built-in ``risk``, ``telegram``, ``metrics``
and ``recorder`` plugins.

The daemon and the order router never touch pluggy: they hold a :class:`plugins.manager.PluginHost`
and call its ``pretrade_check`` and ``notify_*`` methods (see ``plugins.manager``).

Error tree::

    hftd.HftdError
     └── PluginError                    root of this package
          ├── PluginConfigError (ValueError)  a bad ``[plugins]`` key or value: names the key
          └── PluginLoadError                 a plugin cannot be loaded: not found, or a hookimpl
                                              without a matching hookspec (names both)
"""

from hftd import HftdError

__all__ = ["PluginError", "PluginConfigError", "PluginLoadError"]


class PluginError(HftdError):
    """Root of every error raised on purpose by ``plugins``."""


class PluginConfigError(PluginError, ValueError):
    """A ``[plugins]`` key or value is invalid; the message names the key."""


class PluginLoadError(PluginError):
    """A plugin could not be loaded or validated; the message names the plugin (and the hook)."""
