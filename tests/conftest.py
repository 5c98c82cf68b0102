"""Fixtures of the cross-service tests: a fresh Sportello per test, on real processes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Generator
from pathlib import Path

import pytest

from support.probe import BusProbe
from support.system import System


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.when == "call":
        item.stash[_failed] = report.failed
    return report


_failed = pytest.StashKey[bool]()


@pytest.fixture
async def system(
    mongo_url: str, amqp_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[System]:
    sportello = System(mongo_url, amqp_url, tmp_path)
    yield sportello
    await sportello.shutdown(failed=request.node.stash.get(_failed, True))


@pytest.fixture
async def probe(system: System) -> AsyncIterator[BusProbe]:
    async with BusProbe(system.amqp_url, system.namespace) as bus_probe:
        yield bus_probe
