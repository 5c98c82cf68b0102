"""Settings that decide behaviour, not only values: whether and how long a new ticket's
acknowledgement waits for SLA."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sportello_intake.settings import IntakeSettings

CREATED = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)


def test_the_acknowledgement_waits_for_sla_only_where_sla_runs_and_someone_is_told() -> None:
    told_with_sla = IntakeSettings(smtp_relay_url="smtp://relay", sla_url="http://sla",
                                   sla_wait_s=3)
    assert told_with_sla.acknowledgement_waits_until(CREATED) == CREATED + timedelta(seconds=3)
    chat_with_sla = IntakeSettings(chat_callback_url="http://chat", sla_url="http://sla")
    assert chat_with_sla.acknowledgement_waits_until(CREATED) is not None
    # No SLA: it goes at once. Nobody to tell: there is nothing to hold.
    assert IntakeSettings(smtp_relay_url="smtp://relay").acknowledgement_waits_until(
        CREATED) is None
    assert IntakeSettings(sla_url="http://sla").acknowledgement_waits_until(CREATED) is None
