"""Analytics' wiring: its store, the ledger and its gauges, the knowledge client, routes and
handlers."""

from __future__ import annotations

from fastapi import FastAPI

from sportello_analytics import api
from sportello_analytics.consumers import AnalyticsConsumers
from sportello_analytics.service import AnalyticsMetrics, Knowledge, Ledger, ReportMailer
from sportello_analytics.settings import AnalyticsSettings
from sportello_analytics.store import INDEXES, AnalyticsStore, ReportStore
from sportello_runtime.app import Service, ServiceWiring, create_service_app
from sportello_runtime.periodic import every


def wire(service: Service) -> ServiceWiring:
    settings = service.settings
    assert isinstance(settings, AnalyticsSettings)
    store = AnalyticsStore(service.store)
    ledger = Ledger(store, AnalyticsMetrics.registered_on(service.metrics))
    token = settings.service_token.get_secret_value() if settings.service_token else None
    knowledge = Knowledge(settings.knowledge_url, token)
    mailer = ReportMailer(ledger, knowledge, ReportStore(service.store),
                          settings.smtp_relay_url, settings.mail_from,
                          settings.report_recipients, settings.report_language)

    async def settle() -> None:
        await ledger.settle_leftovers()

    return ServiceWiring(
        internal_routers=[api.internal],
        consumers=AnalyticsConsumers(ledger),
        indexes=INDEXES,
        on_startup=[settle],
        background=[every(settings.gauge_interval_s, ledger.refresh_gauges,
                          what="business gauges", at_start=True),
                    every(settings.report_check_interval_s, mailer.at_month_end,
                          what="the monthly report", at_start=True)],
        state={"ledger": ledger, "knowledge": knowledge, "mailer": mailer},
    )


def create_app(settings: AnalyticsSettings | None = None) -> FastAPI:
    return create_service_app(
        settings or AnalyticsSettings(),
        wire,
        title="Sportello analytics",
        description="Every event kept, facts per ticket, daily aggregates, the help desk's "
                    "KPIs and the monthly improvement report.",
    )
