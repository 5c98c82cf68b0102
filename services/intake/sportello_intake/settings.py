from __future__ import annotations

from pydantic import Field, SecretStr

from sportello_runtime.settings import ServiceSettings


class IntakeSettings(ServiceSettings):
    service_name: str = "intake"
    service_port: int = 8001
    mongo_database: str = "sportello_intake"
    channel_keys: dict[str, SecretStr] = Field(
        default_factory=dict,
        description='CHANNEL_KEYS, JSON {"web": "<key>", "api": "<key>", ...}: one API key per '
        "channel; a request authenticated with a channel's key may only post for that channel",
    )
    ticket_prefix: str = Field(default="HD", pattern=r"^[A-Z]{1,6}$")
