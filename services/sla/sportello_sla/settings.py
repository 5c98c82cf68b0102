from __future__ import annotations

from pydantic import Field

from sportello_runtime.settings import ServiceSettings


class SlaSettings(ServiceSettings):
    service_name: str = "sla"
    service_port: int = 8003
    mongo_database: str = "sportello_sla"
    policy_max_age_s: float = Field(
        default=2.0, ge=0, description="How long the latest policy is used from memory for "
        "new tickets; a policy saved on another replica is seen within this time")
    seed_defaults: bool = Field(default=True,
                                description="On first start, save the default policy")
    timer_poll_interval_s: float = Field(default=0.25, gt=0,
                                         description="How often due clocks are looked for")
    timer_lease_s: float = Field(default=30.0, gt=0,
                                 description="How long a replica holds a clock it is firing")
    gauge_interval_s: float = Field(default=5.0, gt=0,
                                    description="How often the active-clock gauge is refreshed")
    replica_name: str | None = Field(default=None,
                                     description="Lease owner name; default host and pid")
