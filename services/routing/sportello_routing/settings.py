from __future__ import annotations

from pydantic import Field

from sportello_runtime.settings import ServiceSettings


class RoutingSettings(ServiceSettings):
    service_name: str = "routing"
    service_port: int = 8002
    mongo_database: str = "sportello_routing"
    default_group_id: str = Field(default="service-desk", pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")
    default_group_name: str = "L1 Service Desk"
