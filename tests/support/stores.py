"""A service's store on its own, for tests and benchmarks that write without publishing."""

from __future__ import annotations

import uuid

from sportello_runtime.metrics import ServiceMetrics
from sportello_runtime.outbox import OutboxRelay


def relay_without_bus(metrics: ServiceMetrics | None = None) -> OutboxRelay:
    """What a store needs to hand its outbox entries to; with no bus behind it, they stay
    in the outbox. Nothing here publishes, and the sweeper is never started."""
    return OutboxRelay(
        None,  # type: ignore[arg-type]
        metrics or ServiceMetrics(f"r{uuid.uuid4().hex[:6]}"),
        sweep_interval_s=60,
        stale_after_s=60,
    )
