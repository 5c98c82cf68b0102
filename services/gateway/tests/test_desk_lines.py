"""The desk's queue lines in MongoDB: events of one new ticket arriving together, and in
any order, all end up in its line; an older event never undoes a newer one. (On a real
MongoDB two upserts of a new line can race, one failing on the unique _id; the store then
writes again into the line that exists. The emulator runs them one after the other, so
this test shows the orders, not that race.)"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from itertools import permutations

import pytest
from pydantic import BaseModel

from sportello_contracts import EventEnvelope, new_event, utc_now
from sportello_contracts.enums import (
    Channel,
    CustomerType,
    Impact,
    Priority,
    SupportLevel,
    TicketStatus,
    Urgency,
)
from sportello_contracts.events import (
    Requester,
    TicketAssigned,
    TicketCreated,
    TicketStatusChanged,
    TicketTriaged,
)
from sportello_gateway.domain.desk import line_update
from sportello_gateway.store import GatewayStore
from sportello_runtime.store import MongoStore

pytestmark = pytest.mark.e2e


@pytest.fixture
async def store(mongo_url: str) -> AsyncIterator[GatewayStore]:
    database = f"desk_{uuid.uuid4().hex[:10]}"
    mongo = MongoStore(mongo_url, database, app_name="test")
    yield GatewayStore(mongo)
    await mongo.client.drop_database(database)
    await mongo.close()


def events(ticket_id: str) -> list[EventEnvelope]:
    def wrap(payload: BaseModel) -> EventEnvelope:
        return new_event(payload, producer="test", correlation_id=ticket_id)

    return [
        wrap(TicketCreated(ticket_id=ticket_id, number=f"HD-2026-{ticket_id[-6:]}",
                           channel=Channel.WEB, requester=Requester(name="Ada"),
                           subject="VPN", description="down", created_at=utc_now())),
        wrap(TicketTriaged(ticket_id=ticket_id, category="network", priority=Priority.P2,
                           impact=Impact.MEDIUM, urgency=Urgency.HIGH,
                           customer_type=CustomerType.PRIVATE)),
        wrap(TicketAssigned(ticket_id=ticket_id, level=SupportLevel.L1, group_id="service-desk",
                            group_name="L1", sequence=1)),
        wrap(TicketAssigned(ticket_id=ticket_id, level=SupportLevel.L2, group_id="l2-network",
                            group_name="L2", agent_id="bruno", sequence=2)),
        wrap(TicketStatusChanged(ticket_id=ticket_id, number=f"HD-2026-{ticket_id[-6:]}",
                                 from_status=TicketStatus.NEW,
                                 to_status=TicketStatus.ASSIGNED, version=2)),
    ]


async def test_every_order_and_every_race_ends_in_the_same_line(store: GatewayStore) -> None:
    for n, order in enumerate(list(permutations(range(5)))[::7]):
        ticket_id = f"t-{n:06d}"
        batch = events(ticket_id)
        # All at once, as the work queue's prefetch hands them over.
        updates = [line_update(batch[i]) for i in order]
        await asyncio.gather(*(store.apply(u, batch[0].occurred_at) for u in updates if u))
        line = await store.line(ticket_id)
        assert line is not None
        assert (line["number"], line["category"], line["priority"]) == (
            f"HD-2026-{ticket_id[-6:]}", "network", "P2"), order
        assert (line["group_id"], line["agent_id"], line["routing_sequence"]) == (
            "l2-network", "bruno", 2), order
        assert (line["status"], line["status_version"]) == ("assigned", 2), order
