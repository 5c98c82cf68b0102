"""Intake's admission: the pure rule that refuses what the channels bring once more comes
than the desk assigns within its target wait (no I/O, the time is passed in)."""

from __future__ import annotations

from sportello_intake.admission import Admission, quota


def offered(admission: Admission, count: int, *, start: float, spread_s: float = 1.0,
            **lateness: float) -> int:
    """``count`` tickets offered evenly from ``start`` over ``spread_s``: how many taken."""
    return sum(admission.admit(start + spread_s * n / count, **lateness) for n in range(count))


def interval_heard(admission: Admission, *, offered_count: int, assigned: int,
                   waited_s: float, start: float) -> None:
    """One whole interval: ``assigned`` first assignments heard, ``offered_count`` offered."""
    for n in range(assigned):
        admission.heard(waited_s, start + 0.5 * n / assigned)
    offered(admission, offered_count, start=start, spread_s=0.99)


def test_the_quota_is_what_was_assigned_scaled_by_the_target_over_the_shortest_wait() -> None:
    assert quota(offered=150, assigned=30, shortest_wait_s=2.0, target_s=1.0) == 15
    assert quota(offered=150, assigned=30, shortest_wait_s=0.5, target_s=1.0) == 60
    assert quota(offered=150, assigned=30, shortest_wait_s=0.0, target_s=1.0) == 30_000


def test_no_more_offered_than_assigned_takes_everything_whatever_the_waits() -> None:
    """Routing back after a restart works off its backlog: long waits, yet the queue is
    shrinking, and a requester posting now is not refused for it."""
    assert quota(offered=20, assigned=200, shortest_wait_s=30.0, target_s=1.0) is None
    assert quota(offered=20, assigned=20, shortest_wait_s=30.0, target_s=1.0) is None
    assert quota(offered=20, assigned=0, shortest_wait_s=30.0, target_s=1.0) is None
    admission = Admission(target_s=1.0, interval_s=1.0)
    interval_heard(admission, offered_count=20, assigned=200, waited_s=30.0, start=100.0)
    assert offered(admission, 150, start=101.0) == 150


def test_under_overload_the_next_interval_takes_its_quota_spread_over_it() -> None:
    admission = Admission(target_s=1.0, interval_s=1.0)
    interval_heard(admission, offered_count=150, assigned=30, waited_s=2.0, start=100.0)
    # The quota is 15, taken as the interval goes by: not 15 at once at its start.
    assert [admission.admit(101.0) for _ in range(3)] == [True, False, False]
    assert offered(admission, 150, start=101.01, spread_s=0.98) == 14
    assert admission.admit(101.995) is False


def test_waits_under_the_target_take_more_than_was_assigned() -> None:
    admission = Admission(target_s=1.0, interval_s=1.0)
    interval_heard(admission, offered_count=150, assigned=30, waited_s=0.5, start=100.0)
    assert offered(admission, 150, start=101.0) == 60


def test_an_interval_with_nothing_assigned_or_long_gone_steers_nothing() -> None:
    admission = Admission(target_s=1.0, interval_s=1.0)
    offered(admission, 150, start=100.0)  # nothing heard: routing away, or nothing queued
    assert offered(admission, 150, start=101.0) == 150
    interval_heard(admission, offered_count=150, assigned=30, waited_s=5.0, start=102.0)
    assert offered(admission, 150, start=104.0) == 150  # a quiet second between


def test_a_target_of_zero_takes_everything() -> None:
    admission = Admission(target_s=0.0, interval_s=1.0, max_late_s=0.2)
    interval_heard(admission, offered_count=150, assigned=30, waited_s=60.0, start=100.0)
    assert offered(admission, 150, start=101.0, overdue_s=5.0) == 150


def test_a_late_loop_refuses_only_while_steering() -> None:
    """Quiet, a late loop was one long computation or a pause of the machine, over by
    now: refusing for it would refuse a lone requester. Steering, it is intake behind."""
    quiet = Admission(target_s=1.0, interval_s=1.0, max_late_s=0.2)
    assert quiet.admit(100.0, overdue_s=0.5, last_late_s=0.5) is True
    pressed = Admission(target_s=1.0, interval_s=1.0, max_late_s=0.2)
    interval_heard(pressed, offered_count=150, assigned=30, waited_s=0.5, start=100.0)
    assert pressed.admit(101.0, overdue_s=0.0, last_late_s=0.5) is False
    assert pressed.admit(101.0, overdue_s=0.3, last_late_s=0.0) is False
    assert pressed.admit(101.01, overdue_s=0.1, last_late_s=0.1) is True
    no_limit = Admission(target_s=1.0, interval_s=1.0)
    interval_heard(no_limit, offered_count=150, assigned=30, waited_s=0.5, start=100.0)
    assert no_limit.admit(101.0, overdue_s=5.0, last_late_s=5.0) is True
