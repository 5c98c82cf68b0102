"""/docs is the channels' manual: the OpenAPI document must build and name every door."""

from __future__ import annotations

from sportello_intake.app import create_app
from sportello_intake.settings import IntakeSettings


def test_openapi_names_every_door_and_both_rating_bodies() -> None:
    app = create_app(IntakeSettings(smtp_listen_port=0, status_token_secret="s" * 32))
    paths = app.openapi()["paths"]
    assert {"/tickets", "/channels/email/messages", "/channels/chat/messages",
            "/channels/phone/calls", "/public/tickets/{number}",
            "/public/tickets/{number}/rating"} <= set(paths)
    rating = paths["/public/tickets/{number}/rating"]["post"]["requestBody"]["content"]
    assert set(rating) == {"application/json", "application/x-www-form-urlencoded"}
    assert "message/rfc822" in paths["/channels/email/messages"]["post"]["requestBody"]["content"]
    idempotency = [p for p in paths["/tickets"]["post"]["parameters"]
                   if p["name"] == "idempotency-key"]
    assert idempotency
    assert idempotency[0]["in"] == "header"
