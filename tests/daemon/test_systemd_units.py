"""The unit files pass `systemd-analyze verify` (unknown keys fatal) and keep /dev/shm shared."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNITS = Path(__file__).resolve().parents[2] / "systemd"


def systemd_analyze() -> str | None:
    found = shutil.which("systemd-analyze")
    if found:
        return found
    # Debian: the tool ships in the systemd package; install it only when we can (root + apt).
    if shutil.which("apt-get") and hasattr(__import__("os"), "geteuid") and __import__("os").geteuid() == 0:
        subprocess.run(["apt-get", "install", "-y", "-q", "systemd"], capture_output=True, timeout=300)
    return shutil.which("systemd-analyze")


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """The units with ExecStart pointing at this venv's hftd (verify checks the binary exists)."""
    out = tmp_path_factory.mktemp("units")
    hftd = Path(sys.executable).with_name("hftd")
    if not hftd.exists():
        pytest.skip(f"{hftd} is not installed (pip install -e .)")
    for unit in ("hftd.service", "hftd-bot@.service"):
        text = (UNITS / unit).read_text().replace("/opt/hftd/venv/bin/hftd", str(hftd))
        (out / unit).write_text(text)
    return out


def test_units_verify(rendered):
    tool = systemd_analyze()
    if tool is None:
        pytest.skip("systemd-analyze is missing and systemd's package could not be installed here")
    units = [str(rendered / "hftd.service"), str(rendered / "hftd-bot@.service")]
    strict = subprocess.run([tool, "verify", "--man=no", "--recursive-errors=no", *units],
                            capture_output=True, text=True, timeout=120)
    assert strict.returncode == 0, strict.stderr
    assert strict.stderr.strip() == "", strict.stderr
    plain = subprocess.run([tool, "verify", "--man=no", *units], capture_output=True, text=True, timeout=120)
    assert plain.returncode == 0, plain.stderr


def test_verify_catches_a_typo(rendered, tmp_path):
    """The gate can fail: an unknown key is fatal with --recursive-errors=no."""
    tool = systemd_analyze()
    if tool is None:
        pytest.skip("systemd-analyze is missing and systemd's package could not be installed here")
    bad = tmp_path / "hftd.service"
    bad.write_text((rendered / "hftd.service").read_text().replace("Restart=on-failure", "Restartt=on-failure"))
    out = subprocess.run([tool, "verify", "--man=no", "--recursive-errors=no", str(bad)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode != 0


def settings(unit: str) -> dict[str, str]:
    out = {}
    for line in (UNITS / unit).read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", "[")) and "=" in line:
            key, _, value = line.partition("=")
            out[key] = value
    return out


def test_daemon_unit_contract():
    s = settings("hftd.service")
    assert s["Type"] == "notify" and s["NotifyAccess"] == "main"
    assert s["Restart"] == "on-failure" and s["WatchdogSec"]
    assert s["User"] == "hftd" and s["Group"] == "hftd"
    assert "DynamicUser" not in s and "RemoveIPC" not in s
    for key in ("TemporaryFileSystem", "InaccessiblePaths"):
        assert "/dev/shm" not in s.get(key, "")
    assert s["ExecStart"].split()[1:3] == ["daemon", "--config"]


def test_bot_unit_contract():
    s = settings("hftd-bot@.service")
    assert s["PartOf"] == "hftd.service" and "hftd.service" in s["After"]
    assert s["User"] == "hftd" and "DynamicUser" not in s and "RemoveIPC" not in s
    assert "%i" in s["ExecStart"]
