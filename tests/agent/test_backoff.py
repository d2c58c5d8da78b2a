"""agent.retry.Backoff: exponential backoff with full jitter, capped."""

from __future__ import annotations

import random

from agent.retry import Backoff


def test_each_failure_doubles_the_ceiling_and_the_delay_stays_in_its_upper_half() -> None:
    backoff = Backoff(base=0.5, cap=30.0, _rng=random.Random(7))
    for failure, ceiling in enumerate([0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0], start=1):
        delay = backoff.next_delay()
        assert ceiling / 2 <= delay <= ceiling, (failure, delay)
        assert backoff.failures == failure


def test_the_jitter_spreads_the_delays() -> None:
    delays = {Backoff(base=8.0, cap=8.0, _rng=random.Random(seed)).next_delay() for seed in range(20)}
    assert len(delays) == 20, "replicas retrying at once must not retry in step"
    assert all(4.0 <= d <= 8.0 for d in delays)


def test_a_long_outage_neither_overflows_nor_passes_the_cap() -> None:
    backoff = Backoff(base=0.5, cap=30.0, failures=10_000, _rng=random.Random(1))
    assert 15.0 <= backoff.next_delay() <= 30.0


def test_reset_starts_again_from_the_base() -> None:
    backoff = Backoff(base=1.0, cap=60.0, _rng=random.Random(3))
    for _ in range(5):
        backoff.next_delay()
    backoff.reset()
    assert backoff.failures == 0
    assert 0.5 <= backoff.next_delay() <= 1.0


def test_a_backoff_can_start_from_a_count_of_failures() -> None:
    # agent/publish.py builds Backoff(failures=attempts - 1) for a version's next retry.
    assert 2.0 <= Backoff(base=1.0, failures=2, _rng=random.Random(5)).next_delay() <= 4.0
