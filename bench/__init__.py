"""The benchmarks: every speed claim in hftd, each run beside its reference in the same process tree.

``hftd bench NAME`` runs one (``bench.cli`` holds the registry; ``bench.core`` the result and the
host-steal accounting every benchmark reports).  The harnesses, the baseline transports (iceoryx2,
pyzmq, multiprocessing), the hftbacktest comparisons, the ring stress workers and the ring demo
live here, so the product packages (shm, daemon, bots, plugins, hftd) carry none of it.

Product code never imports ``bench``: a dependency points from here into the product, never back.
"""

import shm.numba_cache  # noqa: F401,I001  first: cache stamps must cover dependencies (see there)
