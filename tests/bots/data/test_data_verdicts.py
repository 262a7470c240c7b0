"""The verdict cache (bots.data.verdicts): a file checked clean is not checked again while unchanged."""

from __future__ import annotations

import os

import pytest
from data_helpers import make_events

from bots.data import save_events, verdicts
from bots.data.io import member_offset


def _file(tmp_path, n=1000):
    return save_events(tmp_path / "ev.npz", make_events(n))


def test_recorded_verdict_is_known(tmp_path, verdict_cache):
    path = _file(tmp_path)
    ident = verdicts.identity(path)
    assert not verdicts.known_clean(ident)
    assert verdicts.record_clean(path, ident)
    assert verdicts.known_clean(verdicts.identity(path))
    assert [p.name for p in verdict_cache.iterdir()] == [p.name for p in verdict_cache.iterdir() if ".tmp-" not in p.name]


@pytest.mark.parametrize("change", ["touch", "rewrite_same", "rewrite_bad", "truncate", "replace"])
def test_changed_file_is_unknown(tmp_path, verdict_cache, change):
    path = _file(tmp_path)
    ident = verdicts.identity(path)
    assert verdicts.record_clean(path, ident)
    st = os.stat(path)
    if change == "touch":  # even setting the same mtime back changes the ctime
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    elif change == "rewrite_same":  # same size, same bytes, rewritten in place
        data = path.read_bytes()
        with open(path, "r+b") as f:
            f.write(data)
    elif change == "rewrite_bad":
        rows = make_events(1000)
        rows["exch_ts"][500] = 0
        with open(path, "r+b") as f:  # in place: same inode, same size
            f.seek(member_offset(path))
            f.write(rows.tobytes())
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # mtime set back: the ctime still moves
    elif change == "truncate":
        os.truncate(path, st.st_size - 64)
    else:
        save_events(path, make_events(1000))  # a new file under the same name
    assert verdicts.identity(path) != ident
    assert not verdicts.known_clean(verdicts.identity(path))


def test_changed_during_the_run_is_not_recorded(tmp_path, verdict_cache):
    path = _file(tmp_path)
    ident = verdicts.identity(path)
    save_events(path, make_events(1000))  # rewritten after the run took its identity
    assert not verdicts.record_clean(path, ident)
    assert not verdicts.known_clean(ident) and not verdicts.known_clean(verdicts.identity(path))


def test_new_checker_version_checks_again(tmp_path, verdict_cache, monkeypatch):
    path = _file(tmp_path)
    assert verdicts.record_clean(path, verdicts.identity(path))
    monkeypatch.setattr(verdicts, "_version", "another-rule-set")
    assert not verdicts.known_clean(verdicts.identity(path))


@pytest.mark.parametrize("damage", [b"", b"garbage", "truncated", "other"])
def test_corrupt_entry_is_ignored(tmp_path, verdict_cache, damage):
    path = _file(tmp_path)
    ident = verdicts.identity(path)
    assert verdicts.record_clean(path, ident)
    (entry,) = verdict_cache.iterdir()
    if damage == "truncated":
        entry.write_bytes(ident.encode()[:-5])
    elif damage == "other":  # another file's verdict under this name
        entry.write_bytes(ident.replace("ino ", "ino 9").encode())
    else:
        entry.write_bytes(damage)
    assert not verdicts.known_clean(ident)
    assert verdicts.record_clean(path, ident)  # the run checks again and writes over it
    assert verdicts.known_clean(ident)


def test_unreadable_entry_is_ignored(tmp_path, verdict_cache):
    path = _file(tmp_path)
    ident = verdicts.identity(path)
    verdicts.record_clean(path, ident)
    (entry,) = verdict_cache.iterdir()
    entry.unlink()
    entry.mkdir()  # reading it fails (IsADirectoryError)
    assert not verdicts.known_clean(ident)


def test_unwritable_cache_dir(tmp_path, monkeypatch):
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("x")
    monkeypatch.setenv("HFTD_CACHE_DIR", str(blocker))  # validated/ cannot be made under a file
    path = _file(tmp_path)
    ident = verdicts.identity(path)
    assert not verdicts.record_clean(path, ident)
    assert not verdicts.known_clean(ident)


def test_turned_off(tmp_path, verdict_cache, monkeypatch):
    path = _file(tmp_path)
    verdicts.record_clean(path, verdicts.identity(path))
    monkeypatch.setenv("HFTD_VERDICT_CACHE", "0")
    assert verdicts.identity(path) is None and not verdicts.known_clean(None)
    assert not verdicts.record_clean(path, None)


def test_missing_file(tmp_path, verdict_cache):
    assert verdicts.identity(tmp_path / "nope.npz") is None


def test_identity_names_the_checker_and_the_file(tmp_path, verdict_cache):
    path = _file(tmp_path)
    st = os.stat(path)
    ident = verdicts.identity(path)
    for field in (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns):
        assert f" {field}\n" in ident
    assert f"checker {verdicts._checker_version()}\n" in ident


def test_just_changed_file_is_not_recorded(tmp_path, verdict_cache, monkeypatch):
    """A file changed within SETTLE_NS of now is not recorded (a coarse change time could hide a
    same-size rewrite in the same tick); later it is."""
    path = _file(tmp_path)
    ident = verdicts.identity(path)
    monkeypatch.setattr(verdicts, "SETTLE_NS", 3_600_000_000_000)
    assert not verdicts.record_clean(path, ident) and not verdicts.known_clean(ident)
    monkeypatch.setattr(verdicts, "SETTLE_NS", 0)
    assert verdicts.record_clean(path, ident) and verdicts.known_clean(ident)
