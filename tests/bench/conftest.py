"""The benchmarks' own tests run with ``make stress``, not ``make test``: each starts real processes
(rings, daemon, emulator, bots) for tens of seconds, together about 200 s of the 1,200 s CI allows a
clean clone, and they check the benchmark harness rather than the product. Run them before quoting a
benchmark figure or resolving an issue (``pytest -m stress tests/bench``)."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "/tests/bench/" in str(item.path).replace("\\", "/"):
            item.add_marker(pytest.mark.stress)
