"""What knowledge tells Prometheus."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import Counter, Gauge, Histogram

from sportello_runtime.metrics import ServiceMetrics

SEARCH_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1)
LAG_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300)


@dataclass
class KnowledgeMetrics:
    searches: Counter
    zero_results: Counter
    search_seconds: Histogram
    suggestions: Counter
    deflections: Counter
    feedback: Counter
    candidates: Counter
    faq_proposals: Counter
    deflection_rate: Gauge
    index_documents: Gauge
    index_age: Gauge
    index_lag: Histogram

    @classmethod
    def registered_on(cls, m: ServiceMetrics) -> KnowledgeMetrics:
        return cls(
            searches=m.counter("kb_searches_total", "Searches, by audience",
                               ["audience"]),
            zero_results=m.counter("kb_zero_result_searches_total",
                                   "Searches that found nothing, by audience", ["audience"]),
            search_seconds=m.histogram("kb_search_seconds", "Time to answer a search",
                                       buckets=SEARCH_BUCKETS),
            suggestions=m.counter("kb_suggestions_published_total",
                                  "Tickets whose suggestions were published"),
            deflections=m.counter("kb_deflections_total",
                                  "Requesters who said an article solved their problem"),
            feedback=m.counter("kb_feedback_total", "Article feedback, by answer",
                               ["helpful"]),
            candidates=m.counter("kb_candidates_total", "Closed tickets proposed as articles"),
            faq_proposals=m.counter("kb_faq_proposals_total",
                                    "Recurring problems proposed as FAQ"),
            deflection_rate=m.gauge(
                "kb_deflection_rate",
                "Problems solved by self-service: deflections over deflections plus tickets"),
            index_documents=m.gauge("kb_index_documents", "Documents in this replica's index"),
            index_age=m.gauge("kb_index_age_seconds",
                              "Seconds since this replica's index last took a change"),
            index_lag=m.histogram("kb_index_lag_seconds",
                                  "From a change saved to it being searchable here",
                                  buckets=LAG_BUCKETS),
        )
