"""Plugin test fixtures: entry points installed on disk."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest


@pytest.fixture
def entry_points_dir(tmp_path, monkeypatch):
    """Install plugin modules with entry points (a ``.dist-info`` on ``sys.path``) the way pip does,
    so ``importlib.metadata`` finds them for real.  Call it with ``{name: module source}``."""

    def install(plugins: dict[str, str], group: str = "hftd.plugins") -> Path:
        site = tmp_path / "site"
        dist = site / "hftd_test_plugins-1.0.dist-info"
        dist.mkdir(parents=True, exist_ok=True)
        (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: hftd-test-plugins\nVersion: 1.0\n")
        lines = [f"[{group}]"]
        for name, source in plugins.items():
            mod = f"hftd_test_plugin_{name}"
            (site / f"{mod}.py").write_text(textwrap.dedent(source))
            lines.append(f"{name} = {mod}")
            sys.modules.pop(mod, None)
        (dist / "entry_points.txt").write_text("\n".join(lines) + "\n")
        monkeypatch.syspath_prepend(str(site))
        return site

    return install
