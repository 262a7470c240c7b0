"""Suite-wide fixtures."""

import os
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    """The read-only sample data beside the repository (absent on other machines)."""
    return Path(os.environ.get("HFTD_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture
def shm_namespace(monkeypatch):
    """A namespace of its own for every test, so segments never collide; removed afterwards."""
    ns = "t" + uuid.uuid4().hex[:10]
    monkeypatch.setenv("HFTD_SHM_NAMESPACE", ns)
    yield ns
    from shm.segment import purge_namespace

    purge_namespace(ns)
