"""A replica's open consoles: who hears what, a slow one told to reload, and whether any
console is open at all (the live queue is bound only then)."""

from __future__ import annotations

from sportello_contracts.enums import SupportLevel
from sportello_gateway.domain.access import Principal, Role
from sportello_gateway.service.live import LiveHub
from sportello_gateway.service.metrics import GatewayMetrics
from sportello_runtime.metrics import ServiceMetrics


def hub(queue_size: int = 2) -> LiveHub:
    return LiveHub(GatewayMetrics.registered_on(ServiceMetrics("gateway")), queue_size)


async def test_each_console_hears_only_the_tickets_its_person_may_see() -> None:
    live = hub()
    assert live.idle.is_set()
    assert not live.watched.is_set()
    l1 = live.join(Principal("anna", Role.AGENT, level=SupportLevel.L1,
                             groups=frozenset({"service-desk"})))
    l2 = live.join(Principal("olga", Role.AGENT, level=SupportLevel.L2,
                             groups=frozenset({"l2-software"})))
    boss = live.join(Principal("carla", Role.COORDINATOR))
    sre = live.join(Principal("sam", Role.SRE))
    assert live.watched.is_set()
    assert not live.idle.is_set()
    assert live.publish({"n": 1}, ("service-desk", None)) == 2
    assert (l1.queue.qsize(), l2.queue.qsize(), boss.queue.qsize(), sre.queue.qsize()) == \
        (1, 0, 1, 0)
    for listener in (l1, l2, boss, sre):
        live.leave(listener)
    assert live.idle.is_set()
    assert not live.watched.is_set()


async def test_a_console_too_slow_to_read_loses_updates_and_is_told() -> None:
    live = hub(queue_size=2)
    slow = live.join(Principal("carla", Role.COORDINATOR))
    for n in range(3):
        live.publish({"n": n}, ())
    assert slow.queue.qsize() == 2
    assert slow.lost
