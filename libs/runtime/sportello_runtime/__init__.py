"""Shared runtime of every Sportello service: bus, store, outbox, telemetry and app factory."""
