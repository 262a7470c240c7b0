"""The batch websocket client: frame scanning across any chunking, fragments, control frames, close,
invalid frames, and the HTTP upgrade, over real loopback sockets where a socket is involved."""

import asyncio
import base64
import hashlib
import struct

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from daemon.wsclient import WsConnection, WsError, WsHandshakeError, accept_key, ws_connect
from daemon.wsframes import OP_CLOSE, OP_PING, OP_PONG, ascii_only, client_frame, scan_frames, utf8_valid

pytestmark = pytest.mark.timeout(60)


# -- server-side frame building (unmasked, RFC 6455 5.2) -------------------------------------
def frame(opcode: int, payload: bytes, fin: bool = True, *, rsv: int = 0, mask: bool = False) -> bytes:
    b0 = (0x80 if fin else 0) | rsv | opcode
    n = len(payload)
    mbit = 0x80 if mask else 0
    if n < 126:
        head = struct.pack("!BB", b0, mbit | n)
    elif n < 65536:
        head = struct.pack("!BBH", b0, mbit | 126, n)
    else:
        head = struct.pack("!BBQ", b0, mbit | 127, n)
    if mask:
        key = b"\x01\x02\x03\x04"
        payload = bytes(c ^ key[i % 4] for i, c in enumerate(payload))
        head += key
    return head + payload


def unmask(data: bytes) -> list[tuple[int, bytes]]:
    """Frames a client wrote (masked), as (opcode, payload)."""
    out, i = [], 0
    while i < len(data):
        b0, b1 = data[i], data[i + 1]
        assert b1 & 0x80, "client frames must be masked"
        n, h = b1 & 0x7F, 2
        if n == 126:
            n, h = struct.unpack("!H", data[i + 2 : i + 4])[0], 4
        elif n == 127:
            n, h = struct.unpack("!Q", data[i + 2 : i + 10])[0], 10
        key = data[i + h : i + h + 4]
        body = data[i + h + 4 : i + h + 4 + n]
        out.append((b0 & 0x0F, bytes(c ^ key[j % 4] for j, c in enumerate(body))))
        i += h + 4 + n
    return out


class FakeTransport(asyncio.Transport):
    def __init__(self):
        super().__init__()
        self.written = bytearray()
        self.closed = False

    def write(self, data):
        self.written += data

    def is_closing(self):
        return self.closed

    def close(self):
        self.closed = True

    def abort(self):
        self.closed = True


class Collector:
    def __init__(self):
        self.messages: list[bytes] = []
        self.reads = 0

    def __call__(self, data, arr, meta, count, local_ts):
        assert arr.dtype == np.uint8 and len(arr) == len(data)
        self.reads += 1
        for k in range(count):
            s, n = int(meta[k, 1]), int(meta[k, 2])
            assert bytes(arr[s : s + n]) == data[s : s + n]
            self.messages.append(data[s : s + n])


def open_conn(loop: asyncio.AbstractEventLoop | None = None, **kw) -> tuple[WsConnection, FakeTransport, Collector]:
    """A connection past its handshake, fed by hand (no event loop needed beyond the futures;
    pass ``loop`` to reuse one: each new loop opens a socket pair)."""
    if loop is None:
        loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    conn = WsConnection(**kw)
    tr = FakeTransport()
    conn.transport = tr
    conn._handshake = loop.create_future()
    conn._closed_fut = loop.create_future()
    conn._open = True
    sink = Collector()
    conn.set_sink(sink)
    return conn, tr, sink


def stream_of(messages: list[bytes], frag_sizes: list[int], pings: list[bool]) -> tuple[bytes, int]:
    """The messages as a server would send them: some fragmented, pings interleaved; and the
    number of pings."""
    out = []
    for i, m in enumerate(messages):
        size = frag_sizes[i % len(frag_sizes)]
        if size and len(m) > size:
            parts = [m[j : j + size] for j in range(0, len(m), size)]
            out.append(frame(1, parts[0], fin=False))
            for j, p in enumerate(parts[1:], 1):
                if pings[(i + j) % len(pings)]:
                    out.append(frame(OP_PING, b"p%d" % j))  # control frames may sit between fragments
                out.append(frame(0, p, fin=j == len(parts) - 1))
        else:
            out.append(frame(1, m))
        if pings[i % len(pings)]:
            out.append(frame(OP_PONG, b""))
    return b"".join(out), sum(1 for f in out if f[0] == 0x80 | OP_PING)


#: text messages (UTF-8, some multi-byte characters, which fragments of 1 or 7 bytes split apart)
messages_st = st.lists(st.text(min_size=0, max_size=100).map(str.encode), min_size=1, max_size=12)


@settings(max_examples=150, deadline=None)
@given(messages=messages_st, frag_sizes=st.lists(st.sampled_from([0, 1, 7, 50]), min_size=1, max_size=4),
       pings=st.lists(st.booleans(), min_size=1, max_size=4), cuts=st.lists(st.integers(0, 10_000), max_size=20))
def test_any_chunking_of_a_stream_gives_the_same_messages(messages, frag_sizes, pings, cuts):
    data, n_pings = stream_of(messages, frag_sizes, pings)
    conn, tr, sink = open_conn()
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    for a, b in zip(points, points[1:]):
        conn.data_received(data[a:b])
    assert sink.messages == messages
    assert not conn.closed and not conn.error
    # every server ping was answered with a masked pong carrying its payload
    sent = unmask(bytes(tr.written))
    assert all(op == OP_PONG for op, _ in sent)
    assert len(sent) == n_pings


def test_byte_boundaries_of_mixed_frames():
    """A read split at every byte, except deep inside the 70 kB payload where every 97th byte: a
    cut there is always "payload incomplete", and all 70k cuts took 17 s of CPU (over a minute on
    the shared machine)."""
    msgs = [b"a" * 10, b"b" * 200, b"c" * 70_000, b"", b'{"x":1}']
    data, _ = stream_of(msgs, [0, 64, 0, 0, 3], [False, True])
    big = data.index(b"c" * 64)
    interior = range(big + 64, big + 70_000 - 64)
    cuts = [c for c in range(len(data) + 1) if c not in interior or (c - interior.start) % 97 == 0]
    loop = asyncio.new_event_loop()  # one for all the connections (a loop per cut took minutes)
    try:
        for cut in cuts:
            conn, _, sink = open_conn(loop)
            conn.data_received(data[:cut])
            conn.data_received(data[cut:])
            assert sink.messages == msgs, cut
    finally:
        asyncio.set_event_loop(None)
        loop.close()
    # and one byte per read
    conn, _, sink = open_conn()
    for i in range(len(data)):
        conn.data_received(data[i : i + 1])
    assert sink.messages == msgs


def test_many_plain_frames_in_one_read_are_one_batch_even_beyond_the_scan_capacity():
    msgs = [b'{"n":%d}' % i for i in range(50)]
    conn, _, sink = open_conn(meta_capacity=16)
    conn.data_received(b"".join(frame(1, m) for m in msgs))
    assert sink.messages == msgs
    assert sink.reads == 4  # 16 + 16 + 16 + 2: one sink call per scan


def test_messages_before_the_sink_is_set_are_queued_in_order():
    conn, _, sink = open_conn()
    conn.set_sink(None)
    conn.data_received(frame(1, b"one") + frame(1, b"two"))
    conn.data_received(frame(OP_PING, b"") + frame(1, b"three"))
    conn.set_sink(sink)
    assert sink.messages == [b"one", b"two", b"three"]


def test_close_frame_is_answered_and_ends_the_link():
    conn, tr, sink = open_conn()
    conn.data_received(frame(1, b"last") + frame(OP_CLOSE, struct.pack("!H", 1011) + b"bye") + frame(1, b"after"))
    assert sink.messages == [b"last"]
    assert conn.closed and conn.close_code == 1011 and tr.closed
    assert unmask(bytes(tr.written)) == [(OP_CLOSE, struct.pack("!H", 1011))]


@pytest.mark.parametrize("data,code,what", [
    (frame(1, b"x", rsv=0x40), 1002, "reserved bits"),
    (frame(1, b"x", mask=True), 1002, "masked frame"),
    (frame(3, b"x"), 1002, "unknown opcode"),
    (frame(OP_PING, b"x", fin=False), 1002, "control frame"),
    (frame(OP_PING, b"x" * 126), 1002, "control frame"),
    (frame(0, b"x"), 1002, "continuation frame without"),
    (frame(1, b"x", fin=False) + frame(1, b"y"), 1002, "new message began"),
    (struct.pack("!BBQ", 0x81, 127, 1 << 40), 1009, "larger than"),
    (frame(1, b"x" * 5000), 1009, "larger than"),
    (frame(1, b"x" * 600, fin=False) + frame(0, b"x" * 600), 1009, "larger than"),
    (frame(1, b'{"s":"BTC\xffUSDT"}'), 1007, "not valid UTF-8"),
    (frame(1, b"x" * 300 + b"\xed\xa0\x80"), 1007, "not valid UTF-8"),  # a UTF-16 surrogate
    (frame(1, "é".encode()[:1], fin=False) + frame(0, b"x"), 1007, "not valid UTF-8 (a fragmented"),
    (frame(1, "é".encode()[:1], fin=False) + frame(OP_PING, b"") + frame(0, b""), 1007, "not valid UTF-8"),
])
def test_invalid_frames_close_with_a_clear_reason(data, code, what):
    conn, tr, sink = open_conn(max_message_bytes=1000)
    conn.data_received(frame(1, b"ok") + data)
    assert sink.messages == [b"ok"]
    assert conn.closed and tr.closed
    assert what in conn.error
    assert unmask(bytes(tr.written))[-1] == (OP_CLOSE, struct.pack("!H", code))


def test_binary_messages_are_not_checked_as_text():
    conn, tr, sink = open_conn()
    conn.data_received(frame(2, b"\xff\xfe") + frame(2, b"\xc3", fin=False) + frame(0, b"\x28"))
    assert sink.messages == [b"\xff\xfe", b"\xc3\x28"] and not conn.closed


def test_a_character_split_across_fragments_is_valid():
    conn, tr, sink = open_conn()
    text = "€ 1,5".encode()
    conn.data_received(frame(1, text[:1], fin=False) + frame(0, text[1:2], fin=False) + frame(0, text[2:]))
    assert sink.messages == [text] and not conn.closed


def python_accepts(data: bytes) -> bool:
    try:
        data.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


#: byte strings near every rule of RFC 3629: lead bytes, continuation ranges, overlongs, surrogates,
#: the U+10FFFF limit, truncated sequences
tricky_bytes = st.lists(st.sampled_from([
    b"a", b"\x7f", b"\x80", b"\xbf", b"\xc0", b"\xc1", b"\xc2", b"\xdf", b"\xe0", b"\xe0\x9f", b"\xe0\xa0",
    b"\xed", b"\xed\x9f", b"\xed\xa0", b"\xef", b"\xf0", b"\xf0\x8f", b"\xf0\x90", b"\xf4", b"\xf4\x8f",
    b"\xf4\x90", b"\xf5", b"\xff", "é".encode(), "€".encode(), "𝄞".encode(),
]), max_size=12).map(b"".join)


@settings(max_examples=400, deadline=None)
@given(data=st.one_of(st.binary(max_size=40), tricky_bytes, st.text(max_size=40).map(str.encode)),
       pad=st.integers(0, 9))
def test_utf8_check_agrees_with_python_strict_decoding(data, pad):
    buf = np.frombuffer(b"#" * pad + data + b"#" * pad, np.uint8)
    assert utf8_valid(buf, pad, pad + len(data)) == python_accepts(data)
    assert ascii_only(buf, pad, pad + len(data)) == data.isascii()
    # and the scan agrees: a text frame is delivered exactly when it is valid UTF-8
    meta = np.zeros((4, 3), np.int64)
    err = scan_frames(np.frombuffer(frame(1, data), np.uint8), 0, 1 << 20, meta)[2]
    assert (err == 0) == python_accepts(data)


def test_scan_leaves_a_partial_frame_and_reports_plainness():
    meta = np.zeros((8, 3), np.int64)
    data = frame(1, b"abc") + frame(1, b"defg")[:3]
    count, pos, err, plain = scan_frames(np.frombuffer(data, np.uint8), 0, 1 << 20, meta)
    assert (count, pos, err, plain) == (1, 5, 0, True)
    data = frame(1, b"abc") + frame(OP_PING, b"")
    assert scan_frames(np.frombuffer(data, np.uint8), 0, 1 << 20, meta)[3] is False


def test_client_frames_are_masked_and_round_trip():
    for n in (0, 5, 125, 126, 65535, 65536):
        payload = bytes(range(256)) * (n // 256) + bytes(range(n % 256))
        assert unmask(client_frame(1, payload)) == [(1, payload)]


# -- over real sockets: a minimal hand-written upgrade server --------------------------------
async def serve(handler):
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def read_request(reader) -> dict[str, str]:
    head = (await reader.readuntil(b"\r\n\r\n")).decode()
    headers = {}
    for line in head.split("\r\n")[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    return headers


def upgrade_response(key: str, accept: str | None = None, extra: str = "") -> bytes:
    acc = accept if accept is not None else base64.b64encode(
        hashlib.sha1(key.encode() + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest()).decode()
    return (f"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {acc}\r\n{extra}\r\n").encode()


def test_handshake_messages_ping_pong_heartbeat_and_close_over_a_socket():
    async def body():
        got = asyncio.Queue()

        async def handler(reader, writer):
            h = await read_request(reader)
            assert h["sec-websocket-version"] == "13" and "sec-websocket-extensions" not in h
            # the upgrade response and the first frames in one write: frames right behind the headers
            writer.write(upgrade_response(h["sec-websocket-key"]) + frame(1, b"hello") + frame(OP_PING, b"hb"))
            data = b""
            while True:  # until the pong, the text and a heartbeat ping have arrived
                data += await reader.read(65536)
                try:
                    frames = unmask(data)
                except (IndexError, struct.error):
                    continue  # a frame still incomplete
                if len(frames) >= 3 and OP_PING in [op for op, _ in frames]:
                    break
            await got.put(frames)
            writer.write(frame(OP_CLOSE, struct.pack("!H", 1000)))
            await writer.drain()
            await reader.read()  # until the client closes
            writer.close()

        server, port = await serve(handler)
        conn = await ws_connect(f"ws://127.0.0.1:{port}/public/stream", heartbeat_s=0.05)
        sink = Collector()
        conn.set_sink(sink)
        await conn.send_str('{"method":"SUBSCRIBE"}')
        frames = await asyncio.wait_for(got.get(), 5)
        ops = [op for op, _ in frames]
        assert (OP_PONG, b"hb") in frames and (1, b'{"method":"SUBSCRIBE"}') in frames and OP_PING in ops
        await asyncio.wait_for(conn.wait_closed(), 5)
        assert sink.messages == [b"hello"] and conn.close_code == 1000
        server.close()

    asyncio.run(body())


def test_missing_pong_drops_the_link():
    async def body():
        async def handler(reader, writer):
            h = await read_request(reader)
            writer.write(upgrade_response(h["sec-websocket-key"]))
            await reader.read()  # never answers pings

        server, port = await serve(handler)
        conn = await ws_connect(f"ws://127.0.0.1:{port}/", heartbeat_s=0.05)
        await asyncio.wait_for(conn.wait_closed(), 5)
        assert "no pong" in conn.error
        server.close()

    asyncio.run(body())


@pytest.mark.parametrize("response,what", [
    (lambda key: b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n", "rejected with HTTP 503"),
    (lambda key: upgrade_response(key, accept="bm9wZQ=="), "Sec-WebSocket-Accept does not match"),
    (lambda key: upgrade_response(key, extra="Sec-WebSocket-Extensions: permessage-deflate\r\n"),
     "extensions we did not offer"),
    (lambda key: b"garbage\r\n\r\n", "malformed status line"),
    (lambda key: b"HTTP/1.1 101 Switching", "connection closed during the handshake"),
])
def test_bad_handshakes_raise_clear_errors(response, what):
    async def body():
        async def handler(reader, writer):
            h = await read_request(reader)
            writer.write(response(h["sec-websocket-key"]))
            await writer.drain()
            writer.close()

        server, port = await serve(handler)
        with pytest.raises(WsHandshakeError, match=what):
            await ws_connect(f"ws://127.0.0.1:{port}/x")
        server.close()

    asyncio.run(body())


def test_bad_url_is_refused():
    with pytest.raises(WsError, match="websocket url must be"):
        asyncio.run(ws_connect("http://127.0.0.1:1/"))


def test_accept_key_matches_rfc_example():
    assert accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_text_frame_that_is_not_utf8_fails_the_link_with_1007_over_a_socket():
    """RFC 6455 8.1 over a real socket: the messages before it are delivered, then the client closes
    with 1007 and says why; nothing after it is delivered."""
    async def body():
        got = asyncio.Queue()

        async def handler(reader, writer):
            h = await read_request(reader)
            writer.write(upgrade_response(h["sec-websocket-key"]) + frame(1, b'{"ok":1}')
                         + frame(1, b'{"s":"BTC\xffUSDT"}') + frame(1, b'{"after":1}'))
            data = b""
            while not data or len(data) < 8:
                chunk = await reader.read(65536)
                if not chunk:
                    break
                data += chunk
            await got.put(unmask(data))
            writer.close()

        server, port = await serve(handler)
        conn = await ws_connect(f"ws://127.0.0.1:{port}/public/stream")
        sink = Collector()
        conn.set_sink(sink)
        frames = await asyncio.wait_for(got.get(), 5)
        await asyncio.wait_for(conn.wait_closed(), 5)
        assert sink.messages == [b'{"ok":1}']
        assert frames == [(OP_CLOSE, struct.pack("!H", 1007))]
        assert conn.error == "protocol error: text message is not valid UTF-8"
        server.close()

    asyncio.run(body())
