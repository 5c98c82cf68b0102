"""The one retry-on-conflict helper every service uses."""

from __future__ import annotations

import asyncio

import pytest
from pymongo.errors import BulkWriteError

from sportello_runtime.concurrency import ConcurrencyConflict, retry_on_conflict
from sportello_runtime.store import duplicates_in


def test_a_step_that_conflicts_is_run_again_until_it_succeeds() -> None:
    calls: list[int] = []

    async def step() -> str:
        calls.append(len(calls))
        if len(calls) < 3:
            raise ConcurrencyConflict("moved on")
        return "saved"

    assert asyncio.run(retry_on_conflict(step, tries=5)) == "saved"
    assert len(calls) == 3


def test_the_conflict_escapes_after_the_last_try_naming_the_record() -> None:
    calls: list[int] = []

    async def step() -> None:
        calls.append(1)
        raise ConcurrencyConflict("moved on")

    with pytest.raises(ConcurrencyConflict, match="ticket 42: 4 concurrent updates"):
        asyncio.run(retry_on_conflict(step, tries=4, what="ticket 42"))
    assert len(calls) == 4


def test_other_errors_are_not_retried() -> None:
    calls: list[int] = []

    async def step() -> None:
        calls.append(1)
        raise KeyError("gone")

    with pytest.raises(KeyError):
        asyncio.run(retry_on_conflict(step))
    assert len(calls) == 1


def test_at_least_one_try() -> None:
    async def step() -> None:
        return None

    with pytest.raises(ValueError, match="at least 1"):
        asyncio.run(retry_on_conflict(step, tries=0))


def test_an_unordered_batch_names_the_writes_refused_as_duplicates() -> None:
    refused = BulkWriteError({"writeErrors": [
        {"index": 0, "code": 11000, "errmsg": "E11000 duplicate key"},
        {"index": 2, "code": 11000, "errmsg": "E11000 duplicate key"}]})
    assert duplicates_in(refused) == {0, 2}


def test_an_unordered_batch_with_another_failure_raises_it_again() -> None:
    failed = BulkWriteError({"writeErrors": [
        {"index": 0, "code": 11000, "errmsg": "E11000 duplicate key"},
        {"index": 1, "code": 2, "errmsg": "bad value"}]})
    with pytest.raises(BulkWriteError):
        duplicates_in(failed)
