"""Knowledge through real processes: an article written and published is suggested to the
requester who mails a ticket about it; a closed ticket is archived, searchable, a
candidate article and part of a recurring problem; every replica keeps its own index."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from typing import Any

import httpx
import pytest

from sportello_contracts import EventEnvelope
from support.dlq import dead_letters
from support.gateway import admin_token, send_mail, support_mail, workspace
from support.mailsink import MailSink, mail_to, text_of
from support.probe import BusProbe
from support.system import SERVICE_TOKEN, System
from support.tickets import ticket_body
from support.wait import eventually

pytestmark = pytest.mark.e2e

PRINTER_IT = {
    "title": "La stampante non stampa",
    "body": "## Cosa fare\n\nSe la **stampante** del piano è bloccata, spegnerla, togliere la "
            "carta inceppata e riaccenderla. Se non basta, aprire una richiesta.",
    "language": "it", "audience": "public", "category": "hardware", "owner": "editor",
    "tags": ["stampante"],
}
SPOOLER_INTERNAL = {
    "title": "Riavviare lo spooler di stampa sul server",
    "body": "Solo per il secondo livello: riavviare il servizio spooler su PRINT01.",
    "language": "it", "audience": "internal", "category": "hardware", "owner": "editor",
}
FIX = ("Lo spooler di stampa sul server PRINT01 era bloccato da un lavoro corrotto: "
       "cancellato il lavoro, riavviato il servizio e verificato che tutte le stampanti del "
       "terzo piano stampassero di nuovo.")


async def publish(kb: httpx.AsyncClient, article: dict[str, Any]) -> dict[str, Any]:
    created = await kb.post("/articles", json=article)
    assert created.status_code == 201, created.text
    published = await kb.post(f"/articles/{created.json()['id']}/publish")
    assert published.status_code == 200, published.text
    body: dict[str, Any] = published.json()
    return body


async def test_a_mailed_ticket_gets_the_published_article_in_its_acknowledgement(
        system: System, probe: BusProbe) -> None:
    with MailSink() as relay:
        knowledge = await system.start("knowledge")
        sla = await system.start("sla")  # its time limit will not come: the acknowledgement
        sla.stop()                       # waits SLA_WAIT_S, and the articles come first
        intake = await system.start("intake", SMTP_RELAY_URL=relay.url, SLA_URL=sla.url,
                                    SLA_WAIT_S="3", ACK_SWEEP_INTERVAL_S="0.2")
        async with system.client("knowledge") as kb:
            public = await publish(kb, PRINTER_IT)
            internal = await publish(kb, SPOOLER_INTERNAL)
            draft = await kb.post("/articles", json={**PRINTER_IT, "title": "Stampanti: bozza"})
            assert draft.status_code == 201

            address = "mario.bianchi@example.it"
            number = await send_mail(intake.smtp_port, support_mail(
                address, "Le stampanti del terzo piano non stampano",
                "Da stamattina nessuna stampante del piano stampa, la carta sembra bloccata."))
            ack = await relay.wait_for(mail_to(address, "Abbiamo ricevuto"),
                                       what="the acknowledgement")
            text = text_of(ack)
            assert number in str(ack["Subject"])
            assert "Articoli che potrebbero aiutarti:" in text
            assert "La stampante non stampa" in text
            assert f"{knowledge.url}/help/articles/{public['id']}" in text
            assert "spooler" not in text
            assert "bozza" not in text

            ready = await probe.wait_for(lambda evs: any(
                e.type == "kb.suggestions_ready" for e in evs), what="suggestions")
            ticket_id = next(e for e in ready if e.type == "kb.suggestions_ready").ticket_id
            for_agent = (await kb.get(f"/tickets/{ticket_id}/suggestions")).json()
            assert [s["article_id"] for s in for_agent["suggestions"]] == [public["id"]]
            assert [s["article_id"] for s in for_agent["internal"]] == [internal["id"]]
        # One mail: the articles went with the acknowledgement, not in one of their own (the
        # handler that kept them on the ticket had decided before the acknowledgement went).
        assert [m for m in relay.to(address) if "Articoli" in str(m["Subject"])] == []


async def close_ticket(system: System, n: int, subject: str, description: str,
                       resolution: str) -> str:
    async with system.channel_client("web") as web:
        created = await web.post("/tickets", json=ticket_body(
            n, subject=subject, description=description))
        assert created.status_code == 201, created.text
        number: str = created.json()["number"]
    async with system.client("intake") as intake:
        for step in ({"status": "resolved", "resolution": resolution}, {"status": "closed"}):
            moved = await intake.post(f"/tickets/{number}/status", json=step)
            assert moved.status_code == 200, moved.text
        ticket_id: str = (await intake.get(f"/tickets/{number}")).json()["id"]
    return ticket_id


async def test_a_closed_ticket_is_archived_searchable_a_candidate_and_a_recurring_problem(
        system: System, probe: BusProbe) -> None:
    await system.start("knowledge", FAQ_THRESHOLD="3")
    await system.start("intake", SLA_WAIT_S="1")
    subject = "Stampanti del terzo piano bloccate"
    first = await close_ticket(system, 1, subject, "Nessuna stampante del piano stampa.", FIX)
    await probe.wait_for(lambda evs: any(e.type == "kb.candidate_created"
                                         and e.ticket_id == first for e in evs),
                         what="kb.candidate_created")
    async with system.client("knowledge") as kb:
        case = (await kb.get(f"/cases/{first}")).json()
        assert case["resolution"] == FIX
        assert case["language"] == "it"
        assert case["time_to_resolve_s"] is not None
        assert case["candidate"]["status"] == "open"

        async def found_as_case() -> list[dict[str, Any]]:
            answer = (await kb.get("/search", params={"q": "stampanti bloccate",
                                                      "kind": "case"})).json()
            hits: list[dict[str, Any]] = answer["hits"]
            return hits
        hits = await eventually(found_as_case, what="the case in the agents' search")
        assert hits[0]["id"] == first
        assert hits[0]["audience"] == "internal"
        public = (await kb.get("/public/search", params={"q": "stampanti bloccate"})).json()
        assert public["total"] == 0  # cases are for agents only

        # An editor turns the candidate into a draft in one action.
        candidates = (await kb.get("/candidates")).json()
        assert [c["ticket_id"] for c in candidates] == [first]
        drafted = await kb.post(f"/candidates/{first}/draft", json={"owner": "editor"})
        assert drafted.status_code == 201, drafted.text
        draft = drafted.json()
        assert draft["status"] == "draft"
        assert draft["candidate_of"] == first
        assert FIX in draft["body"]
        assert draft["linked_tickets"]
        assert (await kb.get("/candidates")).json() == []

        # Published, it covers the problem: the next such ticket is no candidate.
        assert (await kb.post(f"/articles/{draft['id']}/publish")).status_code == 200
        second = await close_ticket(system, 2, subject, "Nessuna stampante del piano stampa.",
                                    FIX)
        await eventually(lambda: _archived(kb, second), what="second case archived")
        assert (await kb.get(f"/cases/{second}")).json()["candidate"] is None
        # A short resolution teaches nothing.
        third = await close_ticket(system, 3, "La VPN non va", "Errore 809.", "Risolto.")
        await eventually(lambda: _archived(kb, third), what="third case archived")
        assert (await kb.get(f"/cases/{third}")).json()["candidate"] is None


async def _archived(kb: httpx.AsyncClient, ticket_id: str) -> bool:
    return (await kb.get(f"/cases/{ticket_id}")).status_code == 200


async def test_recurring_problems_with_no_article_become_one_faq_proposal(
        system: System, probe: BusProbe) -> None:
    await system.start("knowledge", FAQ_THRESHOLD="3")
    await system.start("intake", SLA_WAIT_S="1")
    closed = [await close_ticket(system, n, f"Outlook chiede la password di continuo ({n})",
                                 "Outlook continua a chiedere la password della casella.",
                                 "Rimosse le credenziali salvate.")
              for n in range(1, 5)]
    await close_ticket(system, 9, "Monitor sfarfalla", "Lo schermo sfarfalla.", "Cavo nuovo.")
    proposals = await probe.wait_for(
        lambda evs: any(e.type == "kb.faq_proposed" for e in evs), what="kb.faq_proposed")
    proposal = next(e for e in proposals if e.type == "kb.faq_proposed").payload
    assert proposal["size"] == 3
    assert set(proposal["ticket_ids"]) <= set(closed)
    assert "Outlook" in proposal["title"]
    async with system.client("knowledge") as kb:
        async def listed() -> list[dict[str, Any]] | None:
            found: list[dict[str, Any]] = (await kb.get("/faq-proposals")).json()
            return found if found and found[0]["size"] == 4 else None
        listed_now = await eventually(listed, what="the group grown to four")
        assert len(listed_now) == 1
    assert len([e for e in probe.events if e.type == "kb.faq_proposed"]) == 1  # once


async def test_every_replica_keeps_its_own_index_current_and_rebuilds_it_without_a_gap(
        system: System) -> None:
    await system.start("knowledge", replica="knowledge-a")
    b = await system.start("knowledge", replica="knowledge-b")
    async with system.client("knowledge-a") as kb_a, system.client("knowledge-b") as kb_b:
        article = await publish(kb_a, {**PRINTER_IT, "title": "Toner esaurito",
                                       "body": "Sostituire il toner della stampante."})

        async def seen_on_b() -> bool:
            answer = await kb_b.get("/public/search", params={"q": "toner", "lang": "it"})
            found: list[str] = [h["id"] for h in answer.json()["hits"]]
            return found == [article["id"]]
        await eventually(seen_on_b, what="b's index has a's article")
        retired = await kb_a.post(f"/articles/{article['id']}/retire")
        assert retired.status_code == 200

        async def gone_on_b() -> bool:
            answer = await kb_b.get("/public/search", params={"q": "toner"})
            total: int = answer.json()["total"]
            return total == 0
        await eventually(gone_on_b, what="b's index knows it is retired")

        # Rebuilt on demand, by the command line, following the replica's own rebuild.
        before = (await kb_b.get("/search", params={"q": "toner", "status": "retired"})).json()
        rebuilt = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "sportello_knowledge", "reindex", "--url", b.url],
            env={**b.env, "SERVICE_TOKEN": SERVICE_TOKEN}, capture_output=True, text=True,
            timeout=60)
        assert rebuilt.returncode == 0, rebuilt.stderr
        assert "rebuilt:" in rebuilt.stderr
        after = (await kb_b.get("/search", params={"q": "toner", "status": "retired"})).json()
        assert [h["id"] for h in after["hits"]] == [h["id"] for h in before["hits"]] == [
            article["id"]]

    # In place, with no replica on the folder; refused while one writes it.
    a = system.services["knowledge-a"]
    refused = await reindex(a.env)
    assert refused.returncode != 0
    assert "one writer per index" in refused.stderr
    b.stop()
    offline = await reindex(b.env)
    assert offline.returncode == 0, offline.stderr
    assert "documents indexed" in offline.stderr
    assert "docs/s" in offline.stderr
    b.start()
    await b.wait_ready()
    async with system.client("knowledge-b") as kb_b:
        state = (await kb_b.get("/index")).json()
        assert state["documents"] == 1
        assert state["rebuilding"] is None
        found = await kb_b.get("/search", params={"q": "toner", "status": "retired"})
        assert [h["id"] for h in found.json()["hits"]] == [article["id"]]


async def reindex(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "sportello_knowledge", "reindex"],
        env={**os.environ, **env}, capture_output=True, text=True, timeout=60)


async def test_a_requester_who_says_yes_is_a_deflected_ticket(system: System,
                                                              probe: BusProbe) -> None:
    await system.start("knowledge")
    async with system.client("knowledge") as kb:
        article = await publish(kb, PRINTER_IT)
        async with httpx.AsyncClient(base_url=system.services["knowledge"].url) as anyone:
            said = await anyone.post(f"/public/articles/{article['id']}/solved",
                                     json={"query": "stampante bloccata", "token": "page-1234"})
            assert said.status_code == 200, said.text
            again = await anyone.post(f"/public/articles/{article['id']}/solved",
                                      json={"query": "stampante bloccata", "token": "page-1234"})
            assert again.json() == {"deflected": True, "counted": False}  # the same page
            no = await anyone.post(f"/public/articles/{article['id']}/not-solved",
                                   json={"query": "stampante bloccata"})
            assert "subject=stampante+bloccata" in no.json()["form_url"]
        await probe.wait_for(lambda evs: any(e.type == "kb.deflected" for e in evs),
                             what="kb.deflected")
        stats = (await kb.get("/stats")).json()
        assert stats == {"deflections": 1, "tickets": 0, "deflection_rate": 1.0}
        metrics = (await kb.get("/metrics")).text
        assert "kb_deflection_rate 1.0" in metrics
        assert "kb_deflections_total 1.0" in metrics
        assert 'kb_feedback_total{helpful="no"} 1.0' in metrics
        assert "kb_index_documents 1.0" in metrics
        feedback = (await kb.get(f"/articles/{article['id']}/feedback")).json()
        assert (feedback["helpful"], feedback["not_helpful"]) == (1, 1)
    assert len([e for e in probe.events if e.type == "kb.deflected"]) == 1


async def test_bad_input_gets_a_clear_error_and_a_bad_event_is_parked_with_the_reason(
        system: System, probe: BusProbe) -> None:
    knowledge = await system.start("knowledge", PUBLIC_PER_MINUTE="60", PUBLIC_BURST="3")
    async with httpx.AsyncClient(base_url=knowledge.url) as anyone:
        assert (await anyone.post("/articles", json=PRINTER_IT)).status_code == 401
        assert (await anyone.get("/search", params={"q": "x"})).status_code == 401
    async with system.client("knowledge") as kb:
        wrong = await kb.post("/articles", json={**PRINTER_IT, "language": "fr"})
        assert wrong.status_code == 422
        assert [d["field"] for d in wrong.json()["detail"]] == ["language"]
        huge = await kb.post("/articles", json={**PRINTER_IT, "body": "x" * 100_001})
        assert huge.status_code in (413, 422)
        article = (await kb.post("/articles", json=PRINTER_IT)).json()
        edit = {**PRINTER_IT, "body": "Nuovo testo.", "expected_version": 1, "author": "bea"}
        edit.pop("owner")
        assert (await kb.put(f"/articles/{article['id']}", json=edit)).status_code == 200
        stale = await kb.put(f"/articles/{article['id']}", json={**edit, "body": "Altro."})
        assert stale.status_code == 409
        assert stale.json()["field"] == "expected_version"
        assert stale.json()["current_version"] == 2
        retired = await kb.post(f"/articles/{article['id']}/retire")
        wrong_step = await kb.post(f"/articles/{article['id']}/publish")
        assert retired.status_code == 200
        assert wrong_step.status_code == 409
        diff = (await kb.get(f"/articles/{article['id']}/diff",
                             params={"from": 1, "to": 2})).json()
        assert "+Nuovo testo." in diff["body"]
        assert (await kb.get("/articles/nope")).status_code == 404
        assert (await kb.get("/search", params={"q": "x", "kind": "tickets"})).status_code == 422
    async with httpx.AsyncClient(base_url=knowledge.url) as anyone:
        answers = [(await anyone.get("/public/search", params={"q": "stampante"})).status_code
                   for _ in range(5)]
        assert answers[:3] == [200, 200, 200]
        assert answers[-1] == 429

    await probe.publish(EventEnvelope(
        type="ticket.closed", producer="test", correlation_id="c-1", ticket_id="t-1",
        payload={"ticket_id": "t-1", "subject": "no number"}))
    parked = await dead_letters(system.amqp_url, f"{system.namespace}.knowledge.dlq",
                                expected=1)
    assert "number" in str(parked[0].headers["x-sportello-reason"])


async def test_the_agents_workspace_shows_the_suggestions_through_the_gateway(
        system: System) -> None:
    await system.start("knowledge")
    await system.start("intake", SLA_WAIT_S="1")
    await system.start("routing")
    await system.start("gateway")
    async with system.client("knowledge") as kb:
        public = await publish(kb, PRINTER_IT)
        internal = await publish(kb, SPOOLER_INTERNAL)
    solved = await close_ticket(system, 1, "Stampanti del piano bloccate",
                                "Nessuna stampante del piano stampa.", FIX)
    async with system.client("knowledge") as kb:
        await eventually(lambda: _archived(kb, solved), what="the solved case")
    async with system.channel_client("web") as web:
        created = await web.post("/tickets", json=ticket_body(
            2, subject="Le stampanti non stampano", description="La carta è bloccata."))
        number = created.json()["number"]
    async with system.gateway(await admin_token(system)) as admin:
        async def suggested() -> dict[str, Any] | None:
            ws, _ = await workspace(admin, number)
            kb_part: dict[str, Any] | None = ws["suggestions"]
            return kb_part if kb_part and kb_part.get("similar_cases") else None
        part = await eventually(suggested, what="suggestions in the workspace")
    assert [s["article_id"] for s in part["suggestions"]] == [public["id"]]
    assert [s["article_id"] for s in part["internal"]] == [internal["id"]]
    assert [c["ticket_id"] for c in part["similar_cases"]] == [solved]
