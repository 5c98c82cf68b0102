"""The gateway's business metrics, next to the RED metrics every service has."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import Counter, Gauge, Histogram

from sportello_runtime.metrics import ServiceMetrics


@dataclass
class GatewayMetrics:
    logins: Counter
    commands: Counter
    backend_calls: Histogram
    backend_unavailable: Counter
    rate_limited: Counter
    live_connections: Gauge
    live_dropped: Counter
    webhook_deliveries: Counter
    webhook_delivery_seconds: Histogram
    portal_links: Counter
    portal_sign_ins: Counter
    portal_requests: Counter
    portal_deflections: Counter

    @classmethod
    def registered_on(cls, m: ServiceMetrics) -> GatewayMetrics:
        return cls(
            logins=m.counter("gateway_logins_total", "Sign-in attempts by outcome", ["outcome"]),
            commands=m.counter("gateway_commands_total", "Ticket commands by kind and outcome",
                               ["command", "outcome"]),
            backend_calls=m.histogram("gateway_backend_call_seconds",
                                      "Calls to the services behind, by service", ["service"]),
            backend_unavailable=m.counter("gateway_backend_unavailable_total",
                                          "Calls that found a service down or too slow",
                                          ["service"]),
            rate_limited=m.counter("gateway_rate_limited_total",
                                   "Requests refused with 429, by kind of caller", ["via"]),
            live_connections=m.gauge("gateway_live_connections", "Open live streams"),
            live_dropped=m.counter("gateway_live_dropped_total",
                                   "Live updates dropped for a stream too slow to read them"),
            webhook_deliveries=m.counter("gateway_webhook_deliveries_total",
                                         "Webhook delivery attempts by outcome", ["outcome"]),
            webhook_delivery_seconds=m.histogram("gateway_webhook_delivery_seconds",
                                                 "How long receivers took to answer"),
            portal_links=m.counter("portal_sign_in_links_total",
                                   "Sign-in links asked for, by outcome", ["outcome"]),
            portal_sign_ins=m.counter("portal_sign_ins_total",
                                      "Sign-in links followed, by outcome", ["outcome"]),
            portal_requests=m.counter("portal_requests_total",
                                      "What requesters did in the portal", ["action"]),
            portal_deflections=m.counter("portal_deflections_total",
                                         "Articles that solved it: no ticket opened"),
        )
