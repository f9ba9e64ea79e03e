"""Backoff: exponential ceilings with full jitter, capped, never overflowing."""

from __future__ import annotations

import pytest

from offload.retry import backoff_ceiling, backoff_delay


def test_the_ceiling_doubles_from_the_base_with_each_failed_attempt():
    ceilings = [backoff_ceiling(n, base=1.0, cap=1000.0) for n in range(1, 8)]

    assert ceilings == [1, 2, 4, 8, 16, 32, 64]


def test_the_ceiling_scales_with_the_base():
    assert [backoff_ceiling(n, base=0.5, cap=1000.0) for n in (1, 2, 3)] == [0.5, 1, 2]


def test_the_ceiling_is_capped_at_backoff_max():
    ceilings = [backoff_ceiling(n, base=1.0, cap=10.0) for n in range(1, 8)]

    assert ceilings == [1, 2, 4, 8, 10, 10, 10]


def test_an_attempt_below_one_gets_the_base_ceiling():
    assert backoff_ceiling(0, base=3.0, cap=100.0) == 3.0
    assert backoff_ceiling(-5, base=3.0, cap=100.0) == 3.0


@pytest.mark.parametrize("attempt", [64, 1_000, 10**9])
def test_huge_attempt_numbers_do_not_overflow(attempt: int):
    assert backoff_ceiling(attempt, base=1.0, cap=300.0) == 300.0
    assert backoff_delay(attempt, 1.0, 300.0, uniform=lambda lo, hi: hi) == 300.0


def test_the_delay_is_drawn_between_zero_and_the_ceiling_by_the_injected_uniform():
    calls: list[tuple[float, float]] = []

    def uniform(lo: float, hi: float) -> float:
        calls.append((lo, hi))
        return (lo + hi) / 2

    delays = [backoff_delay(n, 2.0, 20.0, uniform=uniform) for n in (1, 2, 3, 4, 5)]

    assert calls == [(0.0, 2.0), (0.0, 4.0), (0.0, 8.0), (0.0, 16.0), (0.0, 20.0)]
    assert delays == [1.0, 2.0, 4.0, 8.0, 10.0]


def test_the_default_randomness_stays_within_zero_and_the_ceiling():
    delays = [backoff_delay(3, 1.0, 300.0) for _ in range(200)]

    assert all(0.0 <= d <= 4.0 for d in delays)
    assert len(set(delays)) > 1, "full jitter should spread the delays"
