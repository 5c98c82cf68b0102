"""Log lines: JSON for machines, readable for a person at a terminal."""

from __future__ import annotations

import io
import json
import logging
import sys

import pytest

from sportello_runtime.logs import ReadableFormatter, configure_logging, log_context, wants_text


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_auto_means_text_on_a_terminal_and_json_elsewhere() -> None:
    assert wants_text("auto", Terminal())
    assert not wants_text("auto", io.StringIO())
    assert wants_text("text", io.StringIO())
    assert not wants_text("json", Terminal())


def record(message: str, **extra: str | None) -> logging.LogRecord:
    rec = logging.LogRecord("sportello_intake.service", logging.INFO, __file__, 1, message,
                            None, None)
    rec.__dict__.update(extra)
    return rec


def test_a_readable_line_keeps_the_ids_that_are_set() -> None:
    line = ReadableFormatter().format(record("ticket HD-1 opened", ticket_id="t-1",
                                             event_id=None, correlation_id="t-1"))
    assert "INFO  sportello_intake.service: ticket HD-1 opened" in line
    assert line.endswith("(ticket=t-1 correlation=t-1)")
    assert ReadableFormatter().format(record("started")).endswith(": started")


@pytest.mark.parametrize(("log_format", "is_json"), [("json", True), ("text", False)])
def test_every_logger_goes_through_the_chosen_format(
    monkeypatch: pytest.MonkeyPatch, log_format: str, is_json: bool
) -> None:
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    root = logging.getLogger()
    before = list(root.handlers), root.level
    try:
        configure_logging("intake", "INFO", log_format)
        with log_context(ticket_id="t-9"):
            logging.getLogger("sportello_intake.consumers").info("assigned")
    finally:
        root.handlers[:] = before[0]
        root.setLevel(before[1])
    [line] = stream.getvalue().splitlines()
    if is_json:
        parsed = json.loads(line)
        assert (parsed["message"], parsed["ticket_id"], parsed["service"]) == (
            "assigned", "t-9", "intake")
    else:
        assert line.endswith("sportello_intake.consumers: assigned  (ticket=t-9)")
