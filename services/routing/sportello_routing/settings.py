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
    setup_max_age_s: float = Field(
        default=2.0, ge=0,
        description="How long a replica routes new tickets with the triage policy and groups "
                    "it read, before reading them again (its own changes apply at once)",
    )
