"""The batcher on its own: who goes together, and what a lingering batch waits for."""

from __future__ import annotations

import asyncio

from sportello_runtime.batching import Batcher


class Recorder:
    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.gate: asyncio.Event | None = None
        self.started = asyncio.Event()

    async def run(self, key: str, items: list[int]) -> list[int]:
        self.batches.append(items)
        self.started.set()
        if self.gate is not None:
            await self.gate.wait()
        return [item * 10 for item in items]


async def test_a_lone_caller_goes_at_once_and_callers_arriving_meanwhile_go_together() -> None:
    recorder = Recorder()
    recorder.gate = asyncio.Event()
    batcher: Batcher[str, int, int] = Batcher(recorder.run)
    first = asyncio.create_task(batcher.submit("k", 1))
    await asyncio.wait_for(recorder.started.wait(), 5)
    assert recorder.batches == [[1]]  # no waiting for company
    later = [asyncio.create_task(batcher.submit("k", n)) for n in (2, 3)]
    await asyncio.sleep(0)
    recorder.gate.set()
    assert [await first, *await asyncio.gather(*later)] == [10, 20, 30]
    assert recorder.batches == [[1], [2, 3]]


async def test_a_lingering_batcher_gathers_callers_that_arrive_one_after_another() -> None:
    recorder = Recorder()
    batcher: Batcher[str, int, int] = Batcher(recorder.run, linger_s=1.0)
    calls = []
    for n in range(5):  # each arrives when nothing is on its way to the store
        calls.append(asyncio.create_task(batcher.submit("k", n)))
        await asyncio.sleep(0.01)  # far inside the linger, even on a stalling machine
    other_key = asyncio.create_task(batcher.submit("other", 9))
    assert await asyncio.gather(*calls, other_key) == [0, 10, 20, 30, 40, 90]
    assert sorted(recorder.batches) == [[0, 1, 2, 3, 4], [9]]


async def test_a_failing_batch_fails_each_of_its_callers_and_the_next_batch_still_runs() -> None:
    attempts: list[list[int]] = []

    async def run(key: str, items: list[int]) -> list[int]:
        attempts.append(items)
        if len(attempts) == 1:
            raise RuntimeError("store down")
        return items

    batcher: Batcher[str, int, int] = Batcher(run, linger_s=0.05)
    failing = [asyncio.create_task(batcher.submit("k", n)) for n in (1, 2)]
    results = await asyncio.gather(*failing, return_exceptions=True)
    assert [type(r) for r in results] == [RuntimeError, RuntimeError]
    assert await batcher.submit("k", 3) == 3
