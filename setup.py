"""Builds the optional C fast paths (shm/_fastring.c, shm/_fastchannel.c, plugins/_riskfast.c,
plugins/_rawtap.c, daemon/execution/_replyfast.c, daemon/_wsmask.c, daemon/emulator/_emufast.c);
everything else is in pyproject.toml.

``optional=True``: without a C compiler the install still succeeds and shm.ring falls back to
its plain-Python publish (see RingWriter.__init__), about ten times slower per record; the risk
plugin to its Python check (RiskPlugin.__init__ logs it); the recorder's raw-frame tap to a Python
put (plugins.raw_ring.RawRing.read_writer); the Binance session to orjson for its order
replies and order events (daemon.execution.replyparse) and its frames' masking (daemon.wsbatch); the
emulator to its Python texts for a plain order's reply and event (daemon.emulator.binance_fast).
``-ffp-contract=off``: the risk check's
token arithmetic must round as the Python check's does (no fused multiply-add).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("shm._fastring", sources=["shm/_fastring.c"], optional=True, extra_compile_args=["-O2"]),
        Extension("shm._fastchannel", sources=["shm/_fastchannel.c"], depends=["shm/_fastbuf.h"], optional=True,
                  extra_compile_args=["-O2"]),
        Extension("plugins._riskfast", sources=["plugins/_riskfast.c"], depends=["plugins/_riskfast_ledger.h"],
                  optional=True, extra_compile_args=["-O2", "-ffp-contract=off"]),
        Extension("plugins._rawtap", sources=["plugins/_rawtap.c"], depends=["shm/_fastbuf.h"], optional=True,
                  extra_compile_args=["-O2"]),
        Extension("daemon.execution._replyfast", sources=["daemon/execution/_replyfast.c"], optional=True,
                  extra_compile_args=["-O2"]),
        Extension("daemon._wsmask", sources=["daemon/_wsmask.c"], optional=True, extra_compile_args=["-O2"]),
        Extension("daemon.emulator._emufast", sources=["daemon/emulator/_emufast.c"], optional=True,
                  extra_compile_args=["-O2"]),
    ]
)
