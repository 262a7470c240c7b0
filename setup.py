"""Builds shm's optional C fast path (shm/_fastring.c); everything else is in pyproject.toml.

``optional=True``: without a C compiler the install still succeeds and shm.ring falls back to
its plain-Python publish (see RingWriter.__init__), about ten times slower per record.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("shm._fastring", sources=["shm/_fastring.c"], optional=True, extra_compile_args=["-O2"]),
    ]
)
