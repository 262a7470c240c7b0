"""Bot order ids <-> client order ids valid on both venues, with a journal that survives restarts.

Bots reuse their order ids (a grid bot names an order after its price tick), so a bot's id cannot go
to the venue: each *order* gets its own client id, ``<prefix><generation>x<seq>``, the generation in
base 36 and the sequence in hex, e.g. ``h1fx2a9``.  It matches ``[A-Za-z0-9_-]{1,36}`` (Binance ``newClientOrderId``,
Bybit ``orderLinkId``), it is unique per order, and unique across daemon restarts because the
generation (+1 at every start) is kept in the journal.

Journal (``<state_dir>/orderids.journal``, mode 0600): text, one record a line, appended through a
shared memory mapping of the file.  The router flushes the lines of a batch of requests when it
finishes the batch, before the batch's frames go to the venue; the copy into the mapping is no system
call (an ``os.write`` was one per batch, on the path from a bot's request to the wire), and what is
copied is in the page cache at once, as a write's bytes are: a ``kill -9`` of the daemon loses at
most the lines of the batch it was in; only a machine crash can lose what the kernel had not written
back (as with ``write``, no ``fsync``), which the loader skips.  The file grows by ``_CHUNK_BYTES``
reserved with ``posix_fallocate`` (a full disk is an ``OSError`` there, never a SIGBUS on a store
into the mapping); until ``close`` cuts it at the last line, its tail is zero bytes, which the loader
reads as line ends (the file of a killed daemon has them, and lines appended after them count)::

    G <generation>                                              a daemon start
    N <client_id> <bot> <asset_no> <order_id> <venue> <symbol>  a new order
    T <client_id>                                               that order reached a terminal state

At start the journal is read, the live orders (N without T) are kept, the file is rewritten with a
``G`` line and those ``N`` lines only (a temporary file renamed over it), and the generation is the
highest seen plus one.  A line that does not parse is skipped and counted (``bad_lines``).
"""

from __future__ import annotations

import mmap
import os
import re
from typing import NamedTuple
from pathlib import Path

from daemon import ConfigError, DaemonError

__all__ = ["OrderIds", "OrderRef", "CLIENT_ID_RE"]

CLIENT_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,36}$")
_PREFIX_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,7}$")
_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"
JOURNAL_NAME = "orderids.journal"
_tuple_new = tuple.__new__
#: the journal file grows by this much at a time (one remap per ~10,000 orders' lines)
_CHUNK_BYTES = 1 << 20


def _b36(n: int) -> str:
    if n == 0:
        return "0"
    out = []
    while n:
        n, r = divmod(n, 36)
        out.append(_DIGITS[r])
    return "".join(reversed(out))


class OrderRef(NamedTuple):
    """Who owns a client id (a named tuple: made once per order on the hot path, where a frozen
    dataclass's ``__init__`` costs several times as much)."""

    client_id: str
    bot: str
    asset_no: int
    order_id: int
    venue: str
    symbol: str


class OrderIds:
    """The mapping and its journal.  ``new`` for every submit, ``done`` when an order ends."""

    def __init__(self, state_dir: str | Path, *, prefix: str = "h"):
        if not _PREFIX_RE.match(prefix):
            raise ConfigError(f"client id prefix {prefix!r}: expected a letter then up to 7 of [A-Za-z0-9_-]")
        self.prefix = prefix
        self.state_dir = Path(state_dir)
        try:
            self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"[control] state_dir {self.state_dir}: cannot create ({exc.strerror})") from None
        self.path = self.state_dir / JOURNAL_NAME
        self.live: dict[str, OrderRef] = {}
        self.bad_lines = 0
        previous = self._load()
        self.generation = previous + 1
        self._head = f"{prefix}{_b36(self.generation)}x"
        self._ours = re.compile(rf"^{re.escape(prefix)}[0-9a-z]+x[0-9a-f]+$")
        self._seq = 0
        self._pending: list[str] = []
        self._compact()
        self._fd = os.open(self.path, os.O_RDWR | os.O_CLOEXEC)
        self._pos = os.fstat(self._fd).st_size  # the end of the compacted text: lines go from here
        self._map: mmap.mmap | None = None
        self._size = 0
        self._grow(self._pos + 1)

    def _grow(self, need: int) -> None:
        """Reserve the file up to a chunk boundary past ``need`` bytes and map all of it."""
        size = (need // _CHUNK_BYTES + 1) * _CHUNK_BYTES
        os.posix_fallocate(self._fd, 0, size)  # the blocks exist before any store into them
        if self._map is not None:
            self._map.close()
        self._map = mmap.mmap(self._fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        self._size = size

    def _load(self) -> int:
        gen = 0
        try:
            # zero bytes end a line: the unwritten tail of the mapped file a killed daemon left
            # (``close`` cuts it otherwise), with whatever was appended after it since
            text = self.path.read_text(encoding="ascii", errors="replace").replace("\0", "\n")
        except FileNotFoundError:
            return 0
        except OSError as exc:
            raise DaemonError(f"order id journal {self.path}: cannot read ({exc.strerror})") from None
        for line in text.split("\n"):
            if not line:
                continue
            parts = line.split(" ")
            try:
                if parts[0] == "G" and len(parts) == 2:
                    gen = max(gen, int(parts[1]))
                elif parts[0] == "N" and len(parts) == 7 and CLIENT_ID_RE.match(parts[1]):
                    self.live[parts[1]] = OrderRef(parts[1], parts[2], int(parts[3]), int(parts[4]), parts[5], parts[6])
                elif parts[0] == "T" and len(parts) == 2:
                    self.live.pop(parts[1], None)
                else:
                    self.bad_lines += 1
            except ValueError:
                self.bad_lines += 1
        return gen

    def _compact(self) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        lines = [f"G {self.generation}\n"] + [self._n_line(r) for r in self.live.values()]
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, "".join(lines).encode("ascii"))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)

    @staticmethod
    def _n_line(r: OrderRef) -> str:
        return f"N {r.client_id} {r.bot} {r.asset_no} {r.order_id} {r.venue} {r.symbol}\n"

    def new(self, bot: str, asset_no: int, order_id: int, venue: str, symbol: str) -> OrderRef:
        """A fresh client id for a new order of ``bot``, journaled before it is returned."""
        self._seq += 1
        cid = f"{self._head}{self._seq:x}"
        if len(cid) > 36:  # 36**28 orders in one life: not reachable, but never send an invalid id
            raise DaemonError(f"client order id {cid!r} would exceed 36 characters")
        ref = _tuple_new(OrderRef, (cid, bot, asset_no, order_id, venue, symbol))  # OrderRef(...) less a frame
        self._pending.append(f"N {cid} {bot} {asset_no} {order_id} {venue} {symbol}\n")
        self.live[cid] = ref
        return ref

    def flush(self) -> None:
        """Write the journal lines made since the last flush (a copy into the mapped file)."""
        if self._pending:
            data = "".join(self._pending).encode("ascii")
            self._pending.clear()
            pos = self._pos
            end = pos + len(data)
            if end > self._size:
                self._grow(end)
            self._map[pos:end] = data
            self._pos = end

    def is_ours(self, client_id: str) -> bool:
        """The id has the form this journal gives out (any generation): an order a daemon with this
        prefix placed.  Another system on the account must use another prefix."""
        return self._ours.match(client_id) is not None

    def get(self, client_id: str) -> OrderRef | None:
        return self.live.get(client_id)

    def done(self, client_id: str) -> None:
        """The order is terminal: forget it (journaled)."""
        if self.live.pop(client_id, None) is not None:
            self._pending.append(f"T {client_id}\n")

    def close(self) -> None:
        if self._fd >= 0:
            self.flush()
            self._map.close()
            os.ftruncate(self._fd, self._pos)  # the text only, as a reader expects it
            os.close(self._fd)
            self._fd = -1
