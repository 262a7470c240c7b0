"""The benchmarks are one top-level package that the product never imports (issue 13, point 5).

``bench`` measures the product beside its references (iceoryx2, pyzmq, hftbacktest: optional
extras); a product module importing it would drag the extras' seam back into the product.  The one
sanctioned reference is the console's lazy command table (``hftd bench`` and ``hftd ring-demo``
dispatch by module name, as every ``hftd`` subcommand does).  A static scan: every ``import`` and
``from ... import`` statement (at any depth, in functions too) and every ``importlib.import_module`` /
``__import__`` call with a literal name, in every module of the product packages.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PRODUCT = ("shm", "bots", "daemon", "plugins", "hftd")
#: (file, module name): string references allowed, with the reason in the module doc above
ALLOWED = {("hftd/cli.py", "bench.cli"), ("hftd/cli.py", "bench.ring_demo")}


def _is_bench(name: str | None) -> bool:
    return name is not None and (name == "bench" or name.startswith("bench."))


def bench_references(path: Path) -> list[tuple[int, str]]:
    """``(line, module)`` of each reference to the ``bench`` package in one Python file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if _is_bench(a.name)]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and _is_bench(node.module):
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            fn = node.func
            name = fn.attr if isinstance(fn, ast.Attribute) else fn.id if isinstance(fn, ast.Name) else ""
            target = node.args[0].value
            if name in ("import_module", "__import__") and isinstance(target, str) and _is_bench(target):
                found.append((node.lineno, target))
        elif isinstance(node, ast.Dict):  # a lazy command table: {"cmd": ("module", "help")}
            for value in node.values:
                if (isinstance(value, ast.Tuple) and value.elts and isinstance(value.elts[0], ast.Constant)
                        and isinstance(value.elts[0].value, str) and _is_bench(value.elts[0].value)):
                    found.append((value.lineno, value.elts[0].value))
    return found


def test_the_scan_finds_each_way_of_importing(tmp_path):
    planted = tmp_path / "m.py"
    planted.write_text(
        "import os, bench.core\n"
        "from bench import convert\n"
        "from .bench import local  # relative: a sibling module, not the package\n"
        "import benchmarks\n"
        "def f():\n"
        "    import importlib\n"
        "    importlib.import_module('bench.ring')\n"
        "    __import__('bench')\n"
        "COMMANDS = {'x': ('bench.cli', 'help'), 'y': ('bots.cli', 'help')}\n")
    assert sorted(bench_references(planted)) == [
        (1, "bench.core"), (2, "bench"), (7, "bench.ring"), (8, "bench"), (9, "bench.cli")]


@pytest.mark.parametrize("package", PRODUCT)
def test_no_product_package_imports_bench(package):
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"no Python files under {package}/"
    bad = []
    for path in files:
        rel = path.relative_to(ROOT).as_posix()
        bad += [f"{rel}:{line}: {module}" for line, module in bench_references(path)
                if (rel, module) not in ALLOWED]
    assert not bad, "product modules referring to the bench package:\n" + "\n".join(bad)


def test_the_allowed_references_still_exist():
    """The allow-list names real references (a stale entry would hide nothing but mislead)."""
    seen = {(rel, module) for rel in {r for r, _ in ALLOWED}
            for _, module in bench_references(ROOT / rel)}
    assert ALLOWED <= seen
