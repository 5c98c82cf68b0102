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
    smtp_relay_url: str | None = Field(default=None,
                                       description="Where the monthly report is mailed through")
    mail_from: str = "Sportello <help@sportello.localhost>"
    report_recipients: list[str] = Field(
        default_factory=list, description="The coordinators the monthly report goes to")
    report_language: str = Field(default="en", pattern=r"^(it|en)$")
    report_check_interval_s: float = Field(
        default=3600.0, gt=0, description="How often the end of a month is looked for")
