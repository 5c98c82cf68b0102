"""Where the tests' MongoDB and RabbitMQ come from.

MongoDB: ``MONGO_URL`` when set, else testcontainers when a Docker engine
answers, else the wire-protocol emulator started as a separate process and
shared by every process of the run. RabbitMQ: ``AMQP_URL``, else
testcontainers, else the local broker on 127.0.0.1:5672.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LOCAL_AMQP = "amqp://guest:guest@127.0.0.1:5672/"


@dataclass
class Backend:
    url: str
    label: str
    stop: Callable[[], None] = field(default=lambda: None)
    pid: int | None = None


def docker_works() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        result = subprocess.run(["docker", "info"], capture_output=True, timeout=15, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


def start_mongo() -> Backend:
    if url := os.environ.get("MONGO_URL"):
        return Backend(url, "MONGO_URL (an existing MongoDB server)")
    if docker_works():
        from testcontainers.mongodb import MongoDbContainer

        container: Any = MongoDbContainer("mongo:7.0")
        container.start()
        return Backend(container.get_connection_url(), "testcontainers mongo:7.0", container.stop)
    return start_emulator()


def start_emulator() -> Backend:
    folder = Path(tempfile.mkdtemp(prefix="sportello-mongo-"))
    port_file = folder / "port"
    log = (folder / "emulator.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "sportello_mongo_emulator", "--port", "0", "--port-file",
         str(port_file)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 30
    while not port_file.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"the MongoDB emulator did not start: see {folder}/emulator.log")
        time.sleep(0.05)
    port = int(port_file.read_text())

    def stop() -> None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()

    return Backend(
        f"mongodb://127.0.0.1:{port}",
        "MongoDB wire-protocol emulator (mongomock behind mockupdb), one process for the run",
        stop,
        process.pid,
    )


def start_rabbitmq() -> Backend:
    if url := os.environ.get("AMQP_URL"):
        return Backend(url, "AMQP_URL (an existing RabbitMQ)")
    if os.environ.get("SPORTELLO_TEST_RABBITMQ") != "local" and docker_works():
        from testcontainers.rabbitmq import RabbitMqContainer

        container: Any = RabbitMqContainer("rabbitmq:3.13")
        container.start()
        host = container.get_container_host_ip()
        port = container.get_exposed_port(5672)
        return Backend(f"amqp://guest:guest@{host}:{port}/", "testcontainers rabbitmq:3.13",
                       container.stop)
    return Backend(LOCAL_AMQP, "local RabbitMQ at 127.0.0.1:5672")
