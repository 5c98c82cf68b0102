"""Structured logs, one line per event, carrying ticket, event and correlation ids: JSON
for machines, or readable lines for a person at a terminal (``LOG_FORMAT``)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from opentelemetry import trace
from pythonjsonlogger.json import JsonFormatter

_ticket_id: ContextVar[str | None] = ContextVar("ticket_id", default=None)
_event_id: ContextVar[str | None] = ContextVar("event_id", default=None)
_correlation_id: ContextVar[str | None] = ContextVar("correlation_id", default=None)


class _ContextFilter(logging.Filter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def filter(self, record: logging.LogRecord) -> bool:
        record.service = self.service
        record.__dict__.pop("color_message", None)  # uvicorn's ANSI-coloured duplicate
        for name, var in (
            ("ticket_id", _ticket_id),
            ("event_id", _event_id),
            ("correlation_id", _correlation_id),
        ):
            if not hasattr(record, name):
                setattr(record, name, var.get())
        span_context = trace.get_current_span().get_span_context()
        record.trace_id = format(span_context.trace_id, "032x") if span_context.is_valid else None
        return True


class ReadableFormatter(logging.Formatter):
    """``10:42:07 INFO  sportello_intake.service: ticket HD-2026-000042 opened (ticket=…)``:
    the same fields as the JSON lines, for reading in a terminal."""

    IDS = ("ticket_id", "event_id", "correlation_id")

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-5s %(name)s: %(message)s", "%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        ids = [f"{name.removesuffix('_id')}={value}" for name in self.IDS
               if (value := getattr(record, name, None))]
        return f"{line}  ({' '.join(ids)})" if ids else line


def wants_text(log_format: str, stream: object = None) -> bool:
    if log_format != "auto":
        return log_format == "text"
    isatty = getattr(stream if stream is not None else sys.stderr, "isatty", None)
    return bool(isatty and isatty())


def configure_logging(service: str, level: str = "INFO", log_format: str = "json") -> None:
    """Route every logger through one handler on stderr (idempotent): JSON lines, or
    readable ones (``log_format`` "text", or "auto" on a terminal)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_sportello", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler._sportello = True  # type: ignore[attr-defined]
    formatter: logging.Formatter
    if wants_text(log_format, sys.stderr):
        formatter = ReadableFormatter()
    else:
        formatter = JsonFormatter(
            "%(levelname)s %(name)s %(message)s %(service)s "
            "%(ticket_id)s %(event_id)s %(correlation_id)s %(trace_id)s",
            rename_fields={"levelname": "level", "name": "logger"},
            timestamp="time",
        )
    handler.setFormatter(formatter)
    handler.addFilter(_ContextFilter(service))
    root.addHandler(handler)
    root.setLevel(level.upper())
    # httpx logs every request a service makes to another at INFO: the callee logs them.
    for noisy in ("aiormq", "aio_pika", "pymongo", "uvicorn.access", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


@contextmanager
def log_context(
    *, ticket_id: str | None = None, event_id: str | None = None, correlation_id: str | None = None
) -> Iterator[None]:
    """Ids attached to every log line written inside the block."""
    tokens = [
        (_ticket_id, _ticket_id.set(ticket_id)),
        (_event_id, _event_id.set(event_id)),
        (_correlation_id, _correlation_id.set(correlation_id)),
    ]
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)
