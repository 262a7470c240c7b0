"""Every bad input to the segment layer gets a clear exception naming the segment and the expectation."""

import os
import numpy as np
import pytest

from shm import (
    ChannelReader,
    ChannelWriter,
    RingReader,
    RingWriter,
    SegmentConfigError,
    SegmentLayoutError,
    SegmentNotFoundError,
    SegmentPermissionError,
    SegmentSpaceError,
    segment_name,
)
from shm import layout as L
from shm.dtypes import event_dtype
from shm.names import segment_path


def test_attaching_a_missing_segment_names_it(shm_namespace):
    name = segment_name("md", "nothing")
    with pytest.raises(SegmentNotFoundError, match=rf"segment {name}: not found"):
        RingReader.attach(name)


def test_a_file_that_is_not_a_ring_is_refused(shm_namespace):
    name = segment_name("md", "junk")
    segment_path(name).write_bytes(b"hello, not a ring" * 2000)
    with pytest.raises(SegmentLayoutError, match=rf"segment {name}: not an hftd segment \(magic"):
        RingReader.attach(name)
    segment_path(name).write_bytes(b"tiny")
    with pytest.raises(SegmentLayoutError, match="smaller than the 16384-byte header"):
        RingReader.attach(name)


@pytest.mark.parametrize(
    "word, value, message",
    [
        (L.W_LAYOUT_VERSION, 99, f"layout version is 99, expected {L.LAYOUT_VERSION}"),
        (L.W_RECORD_SIZE, 128, "record size is 128, expected 64"),
        (L.W_SCHEMA_VERSION, 7, "schema version is 7, expected 1"),
        (L.W_KIND, L.KIND_ORDER_CHANNEL, "is a channel, expected a ring"),
    ],
)
def test_wrong_layout_fields_are_refused(shm_namespace, word, value, message):
    name = segment_name("md", "bad")
    w = RingWriter.create(name, capacity=1024)
    try:
        w.hdr[word] = value
        with pytest.raises(SegmentLayoutError, match=message):
            RingReader.attach(name)
    finally:
        w.close()


def test_a_truncated_segment_is_refused(shm_namespace):
    name = segment_name("md", "trunc")
    w = RingWriter.create(name, capacity=1024)
    try:
        os.truncate(segment_path(name), L.HEADER_BYTES + 100 * 64)
        with pytest.raises(SegmentLayoutError, match="expected 81920 for capacity 1024"):
            RingReader.attach(name)
    finally:
        w.close()


@pytest.mark.parametrize("capacity", [0, 1, 63, 1000, 3 << 10, 1 << 31, -4, 2.0])
def test_capacity_must_be_a_power_of_two_in_range(shm_namespace, capacity):
    with pytest.raises(SegmentConfigError, match="capacity must be"):
        RingWriter.create(segment_name("md", "cap"), capacity=capacity)


@pytest.mark.parametrize("bad", ["", "a b", "x/y", "..", "é", "x" * 65, "md.lock"])
def test_invalid_name_parts_are_refused(shm_namespace, bad):
    with pytest.raises(SegmentConfigError, match="invalid segment name"):
        segment_name("md", bad)


@pytest.mark.parametrize("bad", ["plain", "a..b", "/etc/passwd", "a.b.c.d.e.f.g.h"])
def test_invalid_full_names_are_refused(shm_namespace, bad):
    with pytest.raises(SegmentConfigError, match="invalid segment name"):
        RingReader.attach(bad)


@pytest.mark.parametrize("mode", [0o400, 0o1777, -1, "600"])
def test_invalid_modes_are_refused(shm_namespace, mode):
    with pytest.raises(SegmentConfigError, match="mode must be"):
        RingWriter.create(segment_name("md", "mode"), capacity=1024, mode=mode)


def test_modes_are_applied_exactly_despite_the_umask(shm_namespace):
    old = os.umask(0o077)
    try:
        w = RingWriter.create(segment_name("md", "grp"), capacity=1024, mode=0o660)
    finally:
        os.umask(old)
    try:
        assert os.stat(segment_path(w.name)).st_mode & 0o777 == 0o660
    finally:
        w.close()


def test_full_shm_filesystem_fails_at_create_not_later(shm_namespace):
    free = os.statvfs("/dev/shm")
    free_bytes = free.f_bavail * free.f_frsize
    capacity = 1 << max(6, (free_bytes // 64).bit_length())  # more records than /dev/shm can hold
    if capacity > L.MAX_CAPACITY:
        pytest.skip(f"/dev/shm has {free_bytes} bytes free, more than the largest ring")
    name = segment_name("md", "huge")
    with pytest.raises(SegmentSpaceError, match=rf"segment {name}: /dev/shm has no room"):
        RingWriter.create(name, capacity=capacity)
    assert not segment_path(name).exists()
    assert not [e for e in os.listdir("/dev/shm") if e.startswith("." + name)]  # no temp left


def test_no_permission_is_a_clear_error(shm_namespace):
    if os.getuid() != 0:
        pytest.skip("needs root to drop to another user")
    name = segment_name("md", "private")
    w = RingWriter.create(name, capacity=1024, mode=0o600)
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: become nobody, then try to attach; only os calls before _exit
        os.close(rfd)
        try:
            os.setgid(65534)
            os.setuid(65534)
            RingReader.attach(name)
            os.write(wfd, b"attached")
        except SegmentPermissionError as exc:
            os.write(wfd, str(exc).encode())
        except BaseException as exc:  # noqa: BLE001 - report anything else to the parent
            os.write(wfd, f"unexpected {exc!r}".encode())
        os._exit(0)
    os.close(wfd)
    try:
        message = os.read(rfd, 4096).decode()
        os.waitpid(pid, 0)
    finally:
        os.close(rfd)
        w.close()
    assert f"segment {name}: no read/write permission for uid 65534" in message, message


def test_channel_and_ring_are_not_interchangeable(shm_namespace):
    name = segment_name("orders", "bot1")
    c = ChannelWriter.create(name, capacity=64)
    try:
        with pytest.raises(SegmentLayoutError, match="is a channel, expected a ring"):
            RingReader.attach(name)
        with pytest.raises(SegmentConfigError, match="64-byte records"):
            c.write(np.zeros(3, dtype=np.int32))
    finally:
        c.close()
    w = RingWriter.create(name, capacity=64)
    try:
        with pytest.raises(SegmentLayoutError, match="is a ring, expected a channel"):
            ChannelReader.attach(name)
    finally:
        w.close()


def test_reading_into_a_wrong_buffer_is_refused(shm_namespace):
    w = RingWriter.create(segment_name("md", "buf"), capacity=64)
    r = RingReader.attach(w.name)
    try:
        with pytest.raises(SegmentConfigError, match="out must be a numpy array of 64-byte records"):
            r.read(np.zeros(10, dtype=np.float64))
        with pytest.raises(SegmentConfigError, match="1-dimensional"):
            r.read(np.zeros((2, 2), dtype=event_dtype))
        with pytest.raises(SegmentConfigError, match="start must be"):
            RingReader.attach(w.name, start="middle")
    finally:
        r.close()
        w.close()
