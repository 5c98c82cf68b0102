"""Session-wide test backends, shared by every test folder (see tests/support/backends.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from support.backends import Backend, start_mongo, start_rabbitmq

_used: dict[str, str] = {}


@pytest.fixture(scope="session")
def mongo_backend() -> Iterator[Backend]:
    backend = start_mongo()
    _used["MongoDB"] = backend.label
    yield backend
    backend.stop()


@pytest.fixture(scope="session")
def mongo_url(mongo_backend: Backend) -> str:
    return mongo_backend.url


@pytest.fixture(scope="session")
def amqp_backend() -> Iterator[Backend]:
    backend = start_rabbitmq()
    _used["RabbitMQ"] = backend.label
    yield backend
    backend.stop()


@pytest.fixture(scope="session")
def amqp_url(amqp_backend: Backend) -> str:
    return amqp_backend.url


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for kind, label in _used.items():
        terminalreporter.write_line(f"{kind} backend used by this run: {label}")
