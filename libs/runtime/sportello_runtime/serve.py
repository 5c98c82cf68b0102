"""Run a service under uvicorn; SIGTERM triggers the lifespan's graceful shutdown."""

from __future__ import annotations

import gc
from collections.abc import Callable
from typing import TypeVar

import uvicorn
from fastapi import FastAPI

from sportello_runtime.settings import ServiceSettings

S = TypeVar("S", bound=ServiceSettings)


def serve(factory: Callable[[S], FastAPI], settings: S) -> None:
    app = factory(settings)
    settle_heap(settings.gc_young_threshold)
    uvicorn.run(
        app,
        host=settings.service_host,
        port=settings.service_port,
        log_config=None,
        access_log=False,
        timeout_keep_alive=settings.http_keep_alive_s,
        timeout_graceful_shutdown=int(settings.shutdown_grace_s) or None,
    )


def settle_heap(young_threshold: int) -> None:
    """Keep the garbage collector off the hot path, once the service is built.

    The ~90,000 objects of the imports and the app (modules, pydantic validators, routes)
    live as long as the process, yet every full collection walked them again: up to
    150-240 ms of CPU each on the benchmark machine, a pause every request and event in
    flight waited out. Frozen, they are out of the collector's sight; reference counting
    still frees what is deleted. And with Python's default of a young collection every 700
    allocations, a service handling tickets at 100/s spent 7-11 % of its CPU collecting the
    requests and events in flight; a young collection every ``young_threshold`` (5,000)
    allocations instead cut that by about two thirds (``bench/intake_bench.py``, and
    ``python_gc_pause_seconds`` on ``/metrics``)."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(young_threshold, older, oldest)
