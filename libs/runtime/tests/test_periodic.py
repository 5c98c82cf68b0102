"""The one background-loop shape: runs on its interval, survives a failing round."""

from __future__ import annotations

import asyncio
import logging

import pytest

from sportello_runtime.periodic import every


def test_a_failing_round_is_logged_and_the_next_one_runs(caplog: pytest.LogCaptureFixture) -> None:
    rounds: list[int] = []
    four = asyncio.Event()

    async def job() -> None:
        rounds.append(len(rounds))
        if len(rounds) == 2:
            raise RuntimeError("the database blinked")
        if len(rounds) == 4:
            four.set()

    async def run() -> None:
        task = asyncio.create_task(every(0.001, job, what="sweep", at_start=True)())
        await asyncio.wait_for(four.wait(), timeout=10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    with caplog.at_level(logging.ERROR):
        asyncio.run(run())
    assert len(rounds) == 4
    assert [r.getMessage() for r in caplog.records] == ["sweep failed"]


def test_without_at_start_the_first_round_waits_an_interval() -> None:
    ran: list[float] = []
    first = asyncio.Event()

    async def job() -> None:
        ran.append(asyncio.get_running_loop().time())
        first.set()

    async def run() -> float:
        started = asyncio.get_running_loop().time()
        task = asyncio.create_task(every(0.05, job, what="gauge")())
        await asyncio.wait_for(first.wait(), timeout=10)
        task.cancel()
        return ran[0] - started

    assert asyncio.run(run()) >= 0.05
