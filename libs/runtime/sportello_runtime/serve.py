"""Run a service under uvicorn; SIGTERM triggers the lifespan's graceful shutdown."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import uvicorn
from fastapi import FastAPI

from sportello_runtime.settings import ServiceSettings

S = TypeVar("S", bound=ServiceSettings)


def serve(factory: Callable[[S], FastAPI], settings: S) -> None:
    uvicorn.run(
        factory(settings),
        host=settings.service_host,
        port=settings.service_port,
        log_config=None,
        access_log=False,
        timeout_keep_alive=settings.http_keep_alive_s,
        timeout_graceful_shutdown=int(settings.shutdown_grace_s) or None,
    )
