"""A cached kernel is recompiled when a module it imports changes (numba alone checks only the
kernel's own file: it would keep returning the old constant)."""

import os
import subprocess
import sys
import textwrap
import time

import pytest

DRIVER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    root = Path(sys.argv[1])
    sys.path.insert(0, str(root))
    from shm import numba_cache
    numba_cache._ROOT = root
    numba_cache._PACKAGES = ("pkgx",)
    from pkgx.user import value
    print(value(), sum(value.stats.cache_hits.values()))
    """
)


def _run(root):
    env = dict(os.environ)
    env.pop("NUMBA_CACHE_DIR", None)
    out = subprocess.run([sys.executable, "-c", DRIVER, str(root)], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    value, hits = out.stdout.split()
    return int(value), int(hits)


@pytest.mark.parametrize("style", ["from pkgx.dep import LIMIT", "from pkgx import dep", "import pkgx.dep"])
def test_a_changed_dependency_recompiles_the_cached_kernel(tmp_path, style):
    pkg = tmp_path / "pkgx"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "dep.py").write_text("LIMIT = 1\n")
    use = {"from pkgx.dep import LIMIT": "LIMIT", "from pkgx import dep": "dep.LIMIT", "import pkgx.dep": "pkgx.dep.LIMIT"}
    (pkg / "user.py").write_text(
        f"{style}\nfrom numba import njit\n\n\n@njit(cache=True)\ndef value():\n    return {use[style]}\n"
    )
    assert _run(tmp_path) == (1, 0)  # compiled and cached
    assert _run(tmp_path) == (1, 1)  # an unchanged tree loads the cache
    time.sleep(0.01)
    (pkg / "dep.py").write_text("LIMIT = 22\n")  # only the dependency changes
    assert _run(tmp_path) == (22, 0)
    assert _run(tmp_path) == (22, 1)
