"""A bot-side ring reader as its own process, for tests: reads one market ring until its producer
closes it and saves every record it read.

    python ring_reader_proc.py RING_NAME OUT.npy

Prints ``attached`` once it holds the ring (so the test can start the feed), and at the end one JSON
line ``{"records": n, "gaps": g, "lost": l, "generation": gen}``; ``gaps``/``lost`` count the times it
was lapped and the records that cost (0 when it read everything).  Uses only the public shm API.
"""

from __future__ import annotations

import sys
import time

import numpy as np
import orjson

from shm import ProducerGoneError, RingReader, SegmentNotFoundError, new_event_buffer

ATTACH_TIMEOUT_S = 30.0


def main(name: str, out_path: str) -> int:
    deadline = time.monotonic() + ATTACH_TIMEOUT_S
    while True:
        try:
            reader = RingReader.attach(name, start="earliest")
            break
        except SegmentNotFoundError:
            if time.monotonic() > deadline:
                print(f"ring {name} did not appear within {ATTACH_TIMEOUT_S} s", file=sys.stderr)
                return 2
            time.sleep(0.01)
    print("attached", flush=True)
    buf = new_event_buffer(1 << 15)
    chunks: list[np.ndarray] = []
    while True:
        try:
            if not reader.wait(timeout_ns=1_000_000_000):
                continue
        except ProducerGoneError:
            break  # the producer closed the ring and every record it published has been read
        while True:
            n = reader.read(buf)
            if not n:
                break
            chunks.append(buf[:n].copy())
    records = np.concatenate(chunks) if chunks else buf[:0].copy()
    np.save(out_path, records)
    print(orjson.dumps({"records": len(records), "gaps": reader.gaps, "lost": reader.lost_total,
                        "generation": reader.generation}).decode(), flush=True)
    reader.close()
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1], sys.argv[2]))
