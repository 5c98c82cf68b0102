"""`make up` as a person runs it (deploy/local/up.sh: the emulator, honcho, every service),
stopped with Ctrl-C and started again: the tickets are still there, and so is the search
index's content. Everything it writes goes to the test's own RUN_DIR and ports."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from support.makeup import MakeUp, secrets_of
from support.tickets import ticket_body

pytestmark = pytest.mark.e2e


async def test_make_up_stopped_and_started_again_keeps_the_tickets_and_articles(
        tmp_path: Path) -> None:
    up = MakeUp(tmp_path / "run")
    try:
        await up.start()
        secrets = secrets_of(up.run_dir)
        web_key = json.loads(secrets["CHANNEL_KEYS"])["web"]
        token = {"Authorization": f"Bearer {secrets['SERVICE_TOKEN']}"}
        async with httpx.AsyncClient(timeout=10) as client:
            created = await client.post(f"{up.url('INTAKE_PORT')}/tickets",
                                        headers={"X-Api-Key": web_key}, json=ticket_body(1))
            assert created.status_code == 201, created.text
            number = created.json()["number"]
            article = await client.post(f"{up.url('KNOWLEDGE_PORT')}/articles", headers=token,
                                        json={"title": "Toner finito", "body": "Cambiarlo.",
                                              "language": "it", "audience": "public",
                                              "owner": "editor"})
            assert article.status_code == 201, article.text
        up.stop()
        assert (up.run_dir / "mongo-emulator.json").exists()  # written before up.sh ends

        await up.start()
        async with httpx.AsyncClient(timeout=10) as client:
            again = await client.get(f"{up.url('INTAKE_PORT')}/tickets/{number}", headers=token)
            assert again.status_code == 200, again.text
            assert again.json()["subject"] == ticket_body(1)["subject"]
            found = await client.get(f"{up.url('KNOWLEDGE_PORT')}/search", headers=token,
                                     params={"q": "toner", "status": "draft"})
            assert [h["id"] for h in found.json()["hits"]] == [article.json()["id"]]
        assert secrets_of(up.run_dir) == secrets  # the same keys: channels keep working
    finally:
        await up.forget()
