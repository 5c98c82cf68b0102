"""Reading a service's Prometheus text in tests."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

Labels = tuple[tuple[str, str], ...]


def samples(text: str, name: str) -> dict[Labels, float]:
    """Every sample called ``name``, by its sorted labels."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


async def metric(client: httpx.AsyncClient, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples with these labels, as the service shows it now."""
    found = samples((await client.get("/metrics")).text, name)
    wanted = set(labels.items())
    return sum((value for have, value in found.items() if wanted <= set(have)), 0.0)
