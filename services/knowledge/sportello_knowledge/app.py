"""Knowledge's wiring: its store and index, the library, the finder, the archive, the
keeper of this replica's index with its own queue, routes and handlers."""

from __future__ import annotations

import logging

from fastapi import FastAPI

from sportello_knowledge import api
from sportello_knowledge.consumers import KnowledgeConsumers
from sportello_knowledge.index import SearchIndex
from sportello_knowledge.service.archive import Archive, ArchiveRules
from sportello_knowledge.service.finder import Finder
from sportello_knowledge.service.indexing import INDEX_KEYS, IndexKeeper
from sportello_knowledge.service.library import Library
from sportello_knowledge.service.metrics import KnowledgeMetrics
from sportello_knowledge.settings import KnowledgeSettings
from sportello_knowledge.store import INDEXES, OUTBOX_COLLECTIONS, KnowledgeStore
from sportello_runtime.app import Service, ServiceWiring, create_service_app
from sportello_runtime.broadcast import ReplicaQueue
from sportello_runtime.periodic import every
from sportello_runtime.ratelimit import RateLimiter

log = logging.getLogger(__name__)


def wire(service: Service) -> ServiceWiring:
    settings = service.settings
    assert isinstance(settings, KnowledgeSettings)
    store = KnowledgeStore(service.store, service.relay)
    metrics = KnowledgeMetrics.registered_on(service.metrics)
    index = SearchIndex(settings.index_dir)
    keeper = IndexKeeper(index, store, metrics,
                         catch_up_margin_s=settings.index_catch_up_margin_s)
    library = Library(store, keeper, metrics)
    finder = Finder(index, store, metrics, public_url=settings.help_url,
                    form_url=settings.ticket_form_url,
                    default_language=settings.default_language,
                    requester_suggestions=settings.requester_suggestions,
                    agent_suggestions=settings.agent_suggestions)
    archive = Archive(store, index, keeper, metrics, ArchiveRules(
        min_resolution_words=settings.candidate_min_words, coverage=settings.coverage,
        faq_threshold=settings.faq_threshold, similarity=settings.faq_similarity,
        default_language=settings.default_language))
    feed = ReplicaQueue(settings.amqp_url, f"{settings.bus_namespace}.events", INDEX_KEYS,
                        keeper.on_event, on_bound=keeper.on_bound)
    keeper.hearing = feed.bound.is_set

    async def open_index() -> None:
        if not await keeper.start():
            log.info("no usable index in %s: rebuilding from MongoDB", settings.index_dir)
            keeper.begin_rebuild()

    async def gauges() -> None:
        keeper.refresh_gauges()
        await finder.deflection_rate()

    return ServiceWiring(
        internal_routers=[api.internal],
        public_routers=[api.public, api.pages],
        consumers=KnowledgeConsumers(finder, archive),
        indexes=INDEXES,
        outbox_collections=OUTBOX_COLLECTIONS,
        on_startup=[open_index],
        background=[keeper.run, feed.run,
                    every(15.0, gauges, what="index and deflection gauges", at_start=True)],
        on_shutdown=[feed.close, index.close],
        state={"library": library, "finder": finder, "archive": archive, "keeper": keeper,
               "limiter": RateLimiter(settings.public_per_minute, settings.public_burst)},
    )


def create_app(settings: KnowledgeSettings | None = None) -> FastAPI:
    return create_service_app(
        settings or KnowledgeSettings(),
        wire,
        title="Sportello knowledge",
        description="Articles and their versions, search in Italian and English, "
                    "suggestions for every ticket, archived cases and recurring problems.",
    )
