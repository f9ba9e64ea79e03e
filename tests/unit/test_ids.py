"""Job ids: UUIDv7 layout and time order."""

from __future__ import annotations

import time
import uuid

from offload.ids import parse_job_id, uuid7


def test_uuid7_sets_the_version_and_the_rfc_variant_bits():
    for _ in range(100):
        value = uuid7()
        assert value.version == 7
        assert value.variant == uuid.RFC_4122
        assert (value.int >> 76) & 0xF == 0x7
        assert (value.int >> 62) & 0b11 == 0b10


def test_uuid7_starts_with_the_current_unix_milliseconds():
    before = time.time_ns() // 1_000_000
    value = uuid7()
    after = time.time_ns() // 1_000_000

    assert before <= value.int >> 80 <= after


def test_uuid7_values_are_unique_and_ordered_by_creation_time():
    earlier = [uuid7() for _ in range(50)]
    start = time.monotonic()
    while time.time_ns() // 1_000_000 <= earlier[-1].int >> 80:
        assert time.monotonic() - start < 1  # the millisecond clock must move on
    later = [uuid7() for _ in range(50)]

    assert len(set(earlier + later)) == 100
    assert max(earlier) < min(later)


def test_parse_job_id_accepts_uuids_and_their_strings_and_rejects_the_rest():
    value = uuid7()

    assert parse_job_id(value) is value
    assert parse_job_id(str(value)) == value
    assert parse_job_id("not-a-uuid") is None
    assert parse_job_id("42") is None


def test_ids_made_in_a_burst_are_strictly_increasing() -> None:
    from offload.ids import uuid7

    ids = [uuid7() for _ in range(20_000)]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert all(i.version == 7 and i.variant == uuid.RFC_4122 for i in ids[:100])


def test_ids_made_in_bulk_are_strictly_increasing_and_follow_single_ones() -> None:
    from offload.ids import uuid7, uuid7_many

    before = uuid7()
    batch = uuid7_many(10_000)
    after = uuid7()
    assert [before, *batch, after] == sorted([before, *batch, after])
    assert len(set(batch)) == len(batch)
    assert all(i.version == 7 and i.variant == uuid.RFC_4122 for i in batch[:100])
