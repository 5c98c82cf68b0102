"""The process-level settings a service runs under, set before it serves."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from sportello_runtime.serve import settle_heap


@pytest.fixture
def collector_as_found() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


@pytest.mark.usefixtures("collector_as_found")
def test_settling_the_heap_freezes_what_exists_and_spaces_young_collections() -> None:
    _, older, oldest = gc.get_threshold()
    built_at_start = ["a route", "a validator"]
    assert tracked(built_at_start)

    settle_heap(4321)

    assert not tracked(built_at_start)  # frozen: no collection walks it again
    assert gc.get_threshold() == (4321, older, oldest)
    assert tracked(["a request in flight"])


def tracked(container: list[str]) -> bool:
    """Whether the collector's generations (not the frozen heap) hold ``container``."""
    return any(o is container for o in gc.get_objects())
