from __future__ import annotations

from pydantic import Field

from sportello_runtime.settings import ServiceSettings


class RoutingSettings(ServiceSettings):
    service_name: str = "routing"
    service_port: int = 8002
    mongo_database: str = "sportello_routing"
    seed_defaults: bool = Field(
        default=True,
        description="On first start, create the default groups and triage policy (defaults.py)",
    )
    queue_sweep_interval_s: float = Field(
        default=5.0, gt=0,
        description="How often queues are drained and agent loads recounted as a safety net",
    )
