"""Identical queue reads at once share one database read, for a short while only."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from sportello_gateway.service.desk import SharedReads


async def test_reads_at_the_same_moment_share_one_and_a_later_one_reads_again() -> None:
    calls = 0
    gate = asyncio.Event()

    async def read() -> list[dict[str, Any]]:
        nonlocal calls
        calls += 1
        await gate.wait()
        return [{"n": calls}]

    shared = SharedReads(max_age_s=0.0)
    waiting = [asyncio.create_task(shared.read("queue", read)) for _ in range(5)]
    await asyncio.sleep(0)
    gate.set()
    answers = await asyncio.gather(*waiting)
    assert calls == 1
    assert all(a == [{"n": 1}] for a in answers)
    assert await shared.read("queue", read) == [{"n": 2}]  # max age 0: read again
    assert await shared.read("another", read) == [{"n": 3}]


async def test_a_failed_read_is_not_kept() -> None:
    attempts = 0

    async def flaky() -> list[dict[str, Any]]:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise ConnectionError("database away")
        return []

    shared = SharedReads(max_age_s=60)
    with pytest.raises(ConnectionError):
        await shared.read("queue", flaky)
    assert await shared.read("queue", flaky) == []
