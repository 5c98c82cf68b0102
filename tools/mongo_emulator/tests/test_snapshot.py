"""With a snapshot file the emulator keeps its data across restarts: what `make up` needs
so that tickets are still there after Ctrl-C and `make up` again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from bson import Binary
from pymongo import ASCENDING, AsyncMongoClient, MongoClient
from pymongo.errors import DuplicateKeyError

from sportello_mongo_emulator import MongoEmulator

Doc = dict[str, Any]
WHEN = datetime(2026, 11, 30, 10, 0, 1, 123000, tzinfo=UTC)


async def test_documents_and_indexes_come_back_after_a_restart(tmp_path: Path) -> None:
    snapshot = tmp_path / "mongo.json"
    first = MongoEmulator("127.0.0.1", 0, snapshot=snapshot)
    first.start()
    client: AsyncMongoClient[Doc] = AsyncMongoClient(first.uri, tz_aware=True)
    tickets = client["sportello_intake"]["tickets"]
    await tickets.create_index([("number", ASCENDING)], unique=True)
    await client["sportello_sla"]["clocks"].create_index([("due_at", ASCENDING)],
                                                         expireAfterSeconds=3600)
    await tickets.insert_one({"_id": "t1", "number": "HD-2026-000001", "at": WHEN,
                              "file": Binary(b"\x00\x01"), "outbox": []})
    await client.close()
    first.stop()
    assert snapshot.exists()

    second = MongoEmulator("127.0.0.1", 0, snapshot=snapshot)
    second.start()
    client = AsyncMongoClient(second.uri, tz_aware=True)
    try:
        tickets = client["sportello_intake"]["tickets"]
        back = await tickets.find_one({"_id": "t1"})
        assert back == {"_id": "t1", "number": "HD-2026-000001", "at": WHEN,
                        "file": b"\x00\x01", "outbox": []}
        with pytest.raises(DuplicateKeyError):  # the unique index came back too
            await tickets.insert_one({"_id": "t2", "number": "HD-2026-000001"})
        ttl = await client["sportello_sla"]["clocks"].index_information()
        assert ttl["due_at_1"]["expireAfterSeconds"] == 3600
    finally:
        await client.close()
        second.stop()


def test_the_process_snapshots_on_sigterm(tmp_path: Path) -> None:
    snapshot, port_file = tmp_path / "mongo.json", tmp_path / "port"
    command = [sys.executable, "-m", "sportello_mongo_emulator", "--port", "0",
               "--port-file", str(port_file), "--snapshot", str(snapshot)]
    process = subprocess.Popen(command, env=os.environ.copy())
    try:
        deadline = time.monotonic() + 20
        while not port_file.exists():
            assert time.monotonic() < deadline, "the emulator did not start"
            assert process.poll() is None
            time.sleep(0.05)
        client: MongoClient[Doc] = MongoClient(f"mongodb://127.0.0.1:{port_file.read_text()}")
        client["db"]["c"].insert_one({"_id": 1, "kept": True})
        client.close()
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(20) == 0
    assert '"kept": true' in snapshot.read_text()
