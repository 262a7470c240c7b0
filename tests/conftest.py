"""Suite-wide fixtures."""

import os
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    """The read-only sample data beside the repository (absent on other machines)."""
    return Path(os.environ.get("HFTD_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session", autouse=True)
def inflate_cache_of_this_run(tmp_path_factory):
    """The cache of inflated event files (bots.data.inflate_cache) goes to this run's temporary
    directory, not the user's ~/.cache: the tests' files are theirs alone."""
    saved = os.environ.get("HFTD_CACHE_DIR")
    os.environ["HFTD_CACHE_DIR"] = str(tmp_path_factory.mktemp("hftd-cache"))
    yield
    if saved is None:
        os.environ.pop("HFTD_CACHE_DIR", None)
    else:
        os.environ["HFTD_CACHE_DIR"] = saved


@pytest.fixture
def shm_namespace(monkeypatch):
    """A namespace of its own for every test, so segments never collide; removed afterwards."""
    ns = "t" + uuid.uuid4().hex[:10]
    monkeypatch.setenv("HFTD_SHM_NAMESPACE", ns)
    yield ns
    from shm.segment import purge_namespace

    purge_namespace(ns)
