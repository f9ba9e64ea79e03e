"""Job ids: UUID version 7 (RFC 9562), time-ordered so that new rows land at the end of the
primary-key index instead of at random pages, and so that ordering by id is ordering by
creation. Python 3.11 has no ``uuid.uuid7``; the layout is a few lines, so we build it here
rather than add a dependency."""

from __future__ import annotations

import os
import struct
import threading
import time
import uuid

_lock = threading.Lock()
_last_millis = 0
_counter = 0


_RAND_B = 0x3FFF_FFFF_FFFF_FFFF
"""The 62 random bits after the variant."""


def _head(millis: int) -> int:
    """The bits of a UUIDv7 that only change with the millisecond: time, version, variant."""
    return (millis & 0xFFFF_FFFF_FFFF) << 80 | 0x7 << 76 | 0b10 << 62


def uuid7() -> uuid.UUID:
    """A new UUIDv7: 48 bits of Unix milliseconds, a 12-bit counter, 62 random bits.

    Ids made by one process are strictly increasing: within one millisecond the counter
    (``rand_a``, RFC 9562 method 1) counts up from a random start.
    """
    global _last_millis, _counter
    rand = int.from_bytes(os.urandom(10), "big")
    with _lock:
        millis = time.time_ns() // 1_000_000
        if millis > _last_millis:
            _last_millis, _counter = millis, (rand >> 64) & 0x7FF  # leave headroom to count
        else:
            _counter += 1
            if _counter > 0xFFF:  # more than ~2,000 ids this millisecond: borrow the next one
                _last_millis, _counter = _last_millis + 1, 0
            millis = _last_millis
        counter = _counter
    return uuid.UUID(int=_head(millis) | counter << 64 | rand & _RAND_B)


def uuid7_many(count: int) -> list[uuid.UUID]:
    """``count`` new ids at once (one lock and one read of the random source): bulk submits."""
    global _last_millis, _counter
    randoms = struct.unpack(f">{count}Q", os.urandom(8 * count))
    ids = []
    append = ids.append
    with _lock:
        millis = time.time_ns() // 1_000_000
        if millis > _last_millis:
            _last_millis, _counter = millis, 0
        counter = _counter
        head = _head(_last_millis)
        for rand in randoms:
            counter += 1
            if counter > 0xFFF:
                _last_millis, counter = _last_millis + 1, 0
                head = _head(_last_millis)
            append(uuid.UUID(int=head | counter << 64 | rand & _RAND_B))
        _counter = counter
    return ids


def parse_job_id(value: uuid.UUID | str) -> uuid.UUID | None:
    """``value`` as a UUID, or None if it is not one (callers answer "not found")."""
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None
