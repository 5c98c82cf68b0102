"""Prometheus metrics: RED for HTTP and event handlers, plus each service's business metrics.

Each service gets its own registry so that two services can live in one
process (the in-process tracing test) without clashing.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Iterator, Sequence
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class ServiceMetrics:
    def __init__(self, service: str) -> None:
        self.service = service
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self.registry.register(GcPauseCollector())
        self.http_requests = Counter(
            "http_requests_total",
            "HTTP requests handled, by route template and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.http_duration = Histogram(
            "http_request_duration_seconds",
            "HTTP request latency by route template",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.events_published = Counter(
            "events_published_total",
            "Events published to the bus, by type and outcome (ok, failed)",
            ["type", "outcome"],
            registry=self.registry,
        )
        self.events_consumed = Counter(
            "events_consumed_total",
            "Events taken from the bus, by type and outcome "
            "(ok, duplicate, retried, dead_lettered)",
            ["type", "outcome"],
            registry=self.registry,
        )
        self.handler_duration = Histogram(
            "event_handler_duration_seconds",
            "Time spent in an event handler, by type",
            ["type"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.outbox_pending = Gauge(
            "outbox_pending_events",
            "Events stored but not yet confirmed by the broker (last sweep)",
            registry=self.registry,
        )

    def counter(self, name: str, documentation: str, labels: Sequence[str] = ()) -> Counter:
        return Counter(name, documentation, list(labels), registry=self.registry)

    def gauge(self, name: str, documentation: str, labels: Sequence[str] = ()) -> Gauge:
        return Gauge(name, documentation, list(labels), registry=self.registry)

    def histogram(
        self,
        name: str,
        documentation: str,
        labels: Sequence[str] = (),
        buckets: Sequence[float] = LATENCY_BUCKETS,
    ) -> Histogram:
        return Histogram(name, documentation, list(labels), buckets=buckets, registry=self.registry)


GC_PAUSE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


class _GcPauses:
    """Every garbage collection of this process, timed from the collector's own callbacks.
    Python stops the whole service for each one, so a long one is latency for every request
    and event in flight; prometheus-client counts collections, not their length."""

    def __init__(self) -> None:
        self._started = 0.0
        self.buckets = [[0] * len(GC_PAUSE_BUCKETS) for _ in range(3)]
        self.counts = [0, 0, 0]
        self.sums = [0.0, 0.0, 0.0]

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        pause = time.perf_counter() - self._started
        generation = info["generation"]
        self.counts[generation] += 1
        self.sums[generation] += pause
        for i, bound in enumerate(GC_PAUSE_BUCKETS):
            if pause <= bound:
                self.buckets[generation][i] += 1
                break


_gc_pauses = _GcPauses()


class GcPauseCollector(Collector):
    """``python_gc_pause_seconds{generation}``, shared by every registry of the process: the
    callback is installed once, however many services (or tests) build their metrics."""

    def __init__(self) -> None:
        if _gc_pauses not in gc.callbacks:
            gc.callbacks.append(_gc_pauses)

    def collect(self) -> Iterator[HistogramMetricFamily]:
        family = HistogramMetricFamily(
            "python_gc_pause_seconds",
            "How long each garbage collection stopped the process, by generation",
            labels=["generation"],
        )
        for generation in range(3):
            cumulative, buckets = 0, []
            for bound, count in zip(GC_PAUSE_BUCKETS, _gc_pauses.buckets[generation],
                                    strict=True):
                cumulative += count
                buckets.append((str(bound), cumulative))
            buckets.append(("+Inf", _gc_pauses.counts[generation]))
            family.add_metric([str(generation)], buckets, sum_value=_gc_pauses.sums[generation])
        yield family
