from __future__ import annotations

from pydantic import Field

from sportello_runtime.settings import ServiceSettings


class AnalyticsSettings(ServiceSettings):
    service_name: str = "analytics"
    service_port: int = 8005
    mongo_database: str = "sportello_analytics"
    knowledge_url: str | None = Field(
        default=None, description="When set, reports carry knowledge's recurring problems")
    gauge_interval_s: float = Field(default=60.0, gt=0,
                                    description="How often the business gauges are refreshed")
