"""The contracts: every event in DESIGN.md, envelopes that evolve additively."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from pydantic import ValidationError

from sportello_contracts import EVENT_PAYLOADS, EventEnvelope, new_event, parse_payload, schema
from sportello_contracts.api import TicketCreateRequest
from sportello_contracts.events import Requester, TicketAssigned, TicketCreated, TicketRated
from sportello_contracts.schema import drift, event_schema, write_all

DESIGN_EVENTS = {
    "ticket.created", "ticket.message_added", "ticket.status_changed", "ticket.resolved",
    "ticket.closed", "ticket.reopened", "ticket.rated", "ticket.triaged", "ticket.assigned",
    "ticket.escalated", "ticket.priority_changed", "sla.warning", "sla.breached", "sla.met",
    "sla.time_limit_set", "sla.clock_stopped",
    "kb.article_published", "kb.candidate_created", "kb.suggestions_ready",
    "kb.faq_proposed", "kb.deflected",
    # Knowledge's replicas hear these on their own queues to keep their indexes current.
    "kb.article_changed", "kb.case_archived",
    # Routing: a coordinator's correction of the category (the learned triage learns it),
    # and a model switch that every routing replica hears on its own queue.
    "ticket.recategorised", "triage.model_activated",
}


def test_every_event_of_the_design_has_a_payload_model() -> None:
    assert set(EVENT_PAYLOADS) == DESIGN_EVENTS


def created(ticket_id: str = "t-1") -> TicketCreated:
    return TicketCreated(
        ticket_id=ticket_id, number="HD-2026-000001", channel="email",
        requester=Requester(name="Marco", email="marco@example.it", language="it"),
        subject="Stampante bloccata", description="Il 3° piano non stampa più",
        created_at=datetime(2026, 11, 23, 9, 0, tzinfo=UTC),
    )


def test_new_event_routes_by_type_and_round_trips_through_json() -> None:
    envelope = new_event(created(), producer="intake", correlation_id="t-1")
    assert envelope.type == "ticket.created"
    assert envelope.ticket_id == "t-1"
    again = EventEnvelope.from_json(envelope.to_json())
    assert again == envelope
    payload = parse_payload(again, TicketCreated)
    assert payload.description == "Il 3° piano non stampa più"
    assert payload.requester.language == "it"


def test_consumers_ignore_fields_they_do_not_know() -> None:
    envelope = new_event(created(), producer="intake", correlation_id="t-1")
    grown = json.loads(envelope.to_json())
    grown["tenant"] = "acme"
    grown["payload"]["sentiment"] = "angry"
    parsed = EventEnvelope.model_validate(grown)
    assert parse_payload(parsed, TicketCreated).subject == "Stampante bloccata"


def test_occurred_at_must_carry_a_zone_and_is_kept_in_utc() -> None:
    rome = timezone(timedelta(hours=1))
    envelope = EventEnvelope(type="x", producer="p", correlation_id="c",
                             occurred_at=datetime(2026, 1, 1, 10, 0, tzinfo=rome))
    assert envelope.occurred_at == datetime(2026, 1, 1, 9, 0, tzinfo=UTC)
    with pytest.raises(ValidationError):
        EventEnvelope(type="x", producer="p", correlation_id="c",
                      occurred_at=datetime(2026, 1, 1, 10, 0))


def test_a_payload_that_does_not_match_its_type_is_refused() -> None:
    envelope = EventEnvelope(type="ticket.assigned", producer="routing", correlation_id="c",
                             payload={"ticket_id": "t-1", "level": "L9"})
    with pytest.raises(ValidationError):
        parse_payload(envelope, TicketAssigned)
    with pytest.raises(ValueError, match="does not carry"):
        parse_payload(envelope, TicketRated)
    with pytest.raises(ValueError, match="unknown event type"):
        parse_payload(EventEnvelope(type="ticket.teleported", producer="p", correlation_id="c"))


def test_ratings_are_one_to_five() -> None:
    with pytest.raises(ValidationError):
        TicketRated(ticket_id="t", number="n", score=6)


def test_ticket_requests_refuse_unknown_fields_and_objects_in_text_fields() -> None:
    good = {"requester": {"name": "Ada"}, "subject": "s", "description": "d", "channel": "web"}
    assert TicketCreateRequest.model_validate(good).channel == "web"
    with pytest.raises(ValidationError):
        TicketCreateRequest.model_validate({**good, "status": "closed"})
    with pytest.raises(ValidationError):
        TicketCreateRequest.model_validate({**good, "subject": {"$ne": None}})


def test_json_schemas_are_written_for_every_event(tmp_path: Path) -> None:
    written = write_all(tmp_path)
    assert {p.name for p in written} == {f"{t}.schema.json" for t in DESIGN_EVENTS}
    schema = event_schema("ticket.assigned")
    assert schema["properties"]["type"] == {"const": "ticket.assigned", "title": "Type"}
    assert "level" in schema["properties"]["payload"]["properties"]
    assert uuid.UUID(EventEnvelope(type="x", producer="p", correlation_id="c").event_id.hex)


DOCS_EVENTS = Path(__file__).resolve().parents[3] / "docs" / "events"


def test_the_published_schemas_are_exactly_what_the_models_say() -> None:
    """docs/events is what other teams read: `make contracts` after changing a model."""
    assert drift(DOCS_EVENTS) == {}


def test_a_changed_model_shows_as_drift(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_all(tmp_path)
    (tmp_path / "kb.retired.schema.json").write_text("{}")
    (tmp_path / "sla.met.schema.json").unlink()

    class GrownTicketCreated(TicketCreated):
        channel_detail: str | None = None

    monkeypatch.setitem(EVENT_PAYLOADS, "ticket.created", GrownTicketCreated)
    assert drift(tmp_path) == {"kb.retired": "no such event", "sla.met": "missing",
                               "ticket.created": "differs"}
    assert schema.main(["--check", str(tmp_path)]) == 1
    assert schema.main([str(tmp_path)]) == 0
    assert schema.main(["--check", str(tmp_path)]) == 1  # the stray file stays until removed
    (tmp_path / "kb.retired.schema.json").unlink()
    assert schema.main(["--check", str(tmp_path)]) == 0
