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
    triage_retrain_after: int = Field(
        default=200, ge=0,
        description="Closed tickets since the last training that make the schedule train a "
                    "new triage model (0: only on demand)",
    )
    triage_min_lessons: int = Field(
        default=50, ge=2,
        description="Closed tickets (besides the held-back fifth) before a model is trained",
    )
    triage_min_per_class: int = Field(
        default=5, ge=2,
        description="Tickets a category or group needs to be learned",
    )
    triage_check_interval_s: float = Field(
        default=60.0, gt=0,
        description="How often the schedule counts the closed tickets since the last training",
    )
    triage_max_terms: int = Field(
        default=400_000, ge=100,
        description="Words and character n-grams a model keeps (each): bounds its size",
    )
