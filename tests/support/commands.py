"""Counting the MongoDB commands a piece of code sends: round trips are what the
batching in the store and the outbox exists to save."""

from __future__ import annotations

from pymongo import monitoring


class CommandCounter(monitoring.CommandListener):
    """How many ``command_name`` commands started, on the client it is registered with."""

    def __init__(self, command_name: str) -> None:
        self.command_name = command_name
        self.count = 0

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name == self.command_name:
            self.count += 1

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass
