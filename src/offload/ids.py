"""Job ids: UUID version 7 (RFC 9562), time-ordered so that new rows land at the end of the
primary-key index instead of at random pages. Python 3.11 has no ``uuid.uuid7``; the layout is
twelve lines, so we build it here rather than add a dependency."""

from __future__ import annotations

import os
import time
import uuid


def uuid7() -> uuid.UUID:
    """A new random UUIDv7: 48 bits of Unix milliseconds, version, 74 random bits."""
    millis = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (millis & 0xFFFF_FFFF_FFFF) << 80
    value |= 0x7 << 76  # version 7
    value |= ((rand >> 62) & 0xFFF) << 64  # 12 random bits (rand_a)
    value |= 0b10 << 62  # RFC 4122 variant
    value |= rand & 0x3FFF_FFFF_FFFF_FFFF  # 62 random bits (rand_b)
    return uuid.UUID(int=value)


def parse_job_id(value: uuid.UUID | str) -> uuid.UUID | None:
    """``value`` as a UUID, or None if it is not one (callers answer "not found")."""
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None
