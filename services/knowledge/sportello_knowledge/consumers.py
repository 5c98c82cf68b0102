"""Knowledge's event handlers: a new ticket gets its suggestions, a closed one is archived.

The index's own feed (``kb.article_changed``, ``kb.case_archived``) is not here: every
replica hears it on its own queue (``service.indexing``), not the shared work queue.
"""

from __future__ import annotations

from sportello_contracts import EventEnvelope, parse_payload
from sportello_contracts.events import TicketClosed, TicketCreated
from sportello_knowledge.service.archive import Archive
from sportello_knowledge.service.finder import Finder
from sportello_runtime.bus import Handler, Subscription


class KnowledgeConsumers:
    def __init__(self, finder: Finder, archive: Archive) -> None:
        self._finder = finder
        self._archive = archive

    def subscriptions(self) -> dict[str, Handler | Subscription]:
        return {
            # Suggesting again overwrites the same record and announces again: harmless.
            TicketCreated.event_type: Subscription(self.on_ticket_created, idempotent=True),
            # Archiving is keyed by the ticket and its closing time, its events' ids too.
            TicketClosed.event_type: Subscription(self.on_ticket_closed, idempotent=True),
        }

    def unsubscribed(self) -> list[str]:
        return []

    async def on_ticket_created(self, envelope: EventEnvelope) -> None:
        await self._finder.suggest(parse_payload(envelope, TicketCreated))

    async def on_ticket_closed(self, envelope: EventEnvelope) -> None:
        await self._archive.ticket_closed(parse_payload(envelope, TicketClosed),
                                          envelope.occurred_at)
