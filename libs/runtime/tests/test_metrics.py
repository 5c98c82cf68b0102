"""Metrics the runtime adds on its own, beside each service's."""

from __future__ import annotations

import gc

from prometheus_client import generate_latest

from sportello_runtime.metrics import ServiceMetrics
from support.metrics import samples


def gc_pauses(metrics: ServiceMetrics) -> dict[tuple[str, str], float]:
    """(sample name, le or "") -> value, for generation 1."""
    text = generate_latest(metrics.registry).decode()
    found = {}
    for suffix in ("count", "sum", "bucket"):
        name = f"python_gc_pause_seconds_{suffix}"
        for labels, value in samples(text, name).items():
            if ("generation", "1") in labels:
                found[(name, dict(labels).get("le", ""))] = value
    return found


def test_every_collection_is_timed_by_generation_in_every_registry() -> None:
    intake, routing = ServiceMetrics("intake"), ServiceMetrics("routing")
    gc.disable()  # only the collections below, none the reading itself would set off
    try:
        before = gc_pauses(intake)
        gc.collect(1)
        gc.collect(1)
        after = gc_pauses(intake)
        seen_by_routing = gc_pauses(routing)
    finally:
        gc.enable()

    count = ("python_gc_pause_seconds_count", "")
    assert after[count] == before[count] + 2
    assert after[("python_gc_pause_seconds_sum", "")] > before[("python_gc_pause_seconds_sum", "")]
    assert after[("python_gc_pause_seconds_bucket", "+Inf")] == after[count]
    assert after[("python_gc_pause_seconds_bucket", "1.0")] == after[count]  # none took 1 s
    # One callback for the process: a second registry sees the same collections, once.
    assert seen_by_routing == after
