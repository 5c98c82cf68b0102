"""The learned triage through real processes: tickets that no rule recognises are corrected
by a coordinator and closed; the schedule trains a model on them; the other routing replica
hears it is in use and routes the next such ticket with it, naming the model; a rollback
returns both to the rules. And a new install started from an export of its previous tool."""

from __future__ import annotations

import asyncio
import csv
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.metrics import samples
from support.probe import BusProbe
from support.system import System
from support.tickets import ticket_body, wait_assigned
from support.wait import eventually

pytestmark = pytest.mark.e2e

# No rule of the default policy matches these (none names a printer, the network, a
# password...): without a model every one of them is "general".
TOPICS = {
    "hardware": ["il lettore di badge all'ingresso non legge la tessera",
                 "la webcam non viene rilevata durante la riunione",
                 "le cuffie con microfono gracchiano e si sentono a tratti",
                 "il telefono fisso della scrivania non ha linea",
                 "il proiettore della sala grande non si accende",
                 "la batteria del telefono aziendale si scarica in un'ora",
                 "il lettore di smart card del badge è rotto"],
    "software": ["il gestionale ordini si blocca quando salvo",
                 "excel si chiude aprendo il file del budget",
                 "il programma delle presenze mostra un errore di calcolo",
                 "teams non condivide lo schermo durante la chiamata",
                 "il gestionale contabile è lentissimo da ieri",
                 "il programma di firma digitale non riconosce il certificato",
                 "il gestionale magazzino mostra giacenze sbagliate"],
    "account": ["la mia utenza è scaduta e chiedo il rinnovo",
                "serve l'abilitazione alla cartella condivisa del personale",
                "il codice di sblocco del token non arriva",
                "nuovo collega senza utenza da lunedì",
                "profilo bloccato dopo tre tentativi sbagliati",
                "chiedo i permessi di lettura sulla cartella acquisti",
                "la mia utenza non ha i permessi per la cartella vendite"],
}


async def open_correct_and_close(system: System, n: int, text: str, category: str, *,
                                 unknown: bool) -> None:
    """A requester writes; no rule knows it (``unknown``: before any model could, too); a
    coordinator corrects the category; the ticket is resolved and closed. The correction is
    the lesson."""
    async with system.channel_client("web") as web:
        created = await web.post("/tickets", json=ticket_body(
            n, subject=text.capitalize(), description=f"{text}, potete aiutarmi? (rif. {n})"))
        assert created.status_code == 201, created.text
    ticket = created.json()
    async with system.client("intake") as intake, system.client("routing-b") as routing:
        await wait_assigned(intake, ticket["number"])
        assignment = (await routing.get(f"/assignments/{ticket['id']}")).json()
        if unknown:
            assert assignment["category"] == "general"
        corrected = await routing.post(f"/assignments/{ticket['id']}/category", json={
            "category": category, "reason": "triage correction", "actor": "carla",
            "expected_version": assignment["version"]})
        assert corrected.status_code == 200, corrected.text
        for status in ({"status": "resolved", "resolution": "Sistemato."},
                       {"status": "closed"}):
            moved = await intake.post(f"/tickets/{ticket['number']}/status", json=status)
            assert moved.status_code == 200, moved.text


async def model_in_use(routing: httpx.AsyncClient) -> int | None:
    text = (await routing.get("/metrics")).text
    found = samples(text, "triage_model_version")
    return int(found[()]) if found else None


async def route_one(system: System, n: int, subject: str) -> dict[str, Any]:
    async with system.channel_client("web") as web:
        ticket = (await web.post("/tickets", json=ticket_body(
            n, subject=subject, description="grazie"))).json()
    routing_replica = "routing-b" if "routing-b" in system.services else "routing"
    async with system.client("intake") as intake, system.client(routing_replica) as routing:
        await wait_assigned(intake, ticket["number"])
        return dict((await routing.get(f"/assignments/{ticket['id']}")).json())


async def test_a_model_learned_from_corrections_routes_what_no_rule_matches(
        system: System, probe: BusProbe) -> None:
    await system.start("intake")
    for replica, retrain_after in (("routing", "20"), ("routing-b", "0")):
        # The second replica never trains on its own: its model must come from the first.
        await system.start("routing", replica=replica, TRIAGE_RETRAIN_AFTER=retrain_after,
                           TRIAGE_MIN_LESSONS="20", TRIAGE_MIN_PER_CLASS="4",
                           TRIAGE_CHECK_INTERVAL_S="0.5", TRIAGE_MAX_TERMS="5000")
    async with system.client("routing-b") as routing:
        too_early = await routing.post("/triage/model/train", json={"actor": "carla"})
        assert too_early.status_code == 409
        assert too_early.json()["error"] == "not_enough_lessons"
        policy = (await routing.get("/triage/policy")).json()
        lowered = await routing.put("/triage/policy", json={
            **{k: v for k, v in policy.items() if k != "version"}, "model_threshold": 0.45,
            "based_on_version": policy["version"]})
        assert lowered.status_code == 201, lowered.text

    n = 0
    for copy in range(2):
        for category, lines in TOPICS.items():
            for line in lines:
                n += 1
                # The first round (21 tickets, a fifth held back) is below the 20 lessons a
                # model needs: the schedule may train during the second.
                await open_correct_and_close(system, n, line if copy == 0 else f"ancora: {line}",
                                             category, unknown=copy == 0)

    async with system.client("routing") as first, system.client("routing-b") as second:
        async def trained() -> dict[str, Any] | None:
            models = (await second.get("/triage/models")).json()
            return dict(models) if models["in_use"] else None
        models = await eventually(trained, timeout=90, what="a model trained on a schedule")
        version = models["in_use"]
        record = models["models"][0]
        assert record["version"] == version
        assert record["trigger"] == "schedule"
        assert record["activated"] is True
        assert record["lessons"]["category"] >= 20
        assert record["quality"]["category"]["examples"] == record["held_back"]["category"]
        assert record["size"] > 0

        async def heard(client: httpx.AsyncClient) -> int | None:
            return await model_in_use(client) or None
        assert await eventually(lambda: heard(second), timeout=30,
                                what="the other replica loaded the model") == version
        assert await model_in_use(first) == version

    # Only the replica that did not train is left: what it routes, it routes with the model.
    system.services["routing"].stop()
    routed = await route_one(system, 900, "Il lettore di badge del magazzino non legge la tessera")
    triaged = routed["history"][0]
    assert routed["category"] == "hardware", triaged
    assert (triaged["decided_by"], triaged["model_version"]) == ("model", version)
    assert triaged["confidence"] >= 0.45
    await probe.wait_for(lambda _: bool(probe.of_type("ticket.triaged", routed["ticket_id"])),
                         what="the triage event")
    triage_event = probe.of_type("ticket.triaged", routed["ticket_id"])[0].payload
    assert (triage_event["decided_by"], triage_event["model_version"]) == ("model", version)

    async with system.client("routing-b") as routing:
        back = await routing.post("/triage/model/rollback",
                                  json={"reason": "checking the rules alone", "actor": "admin"})
        assert back.status_code == 200, back.text
        assert back.json()["in_use"] is None
        assert await model_in_use(routing) == 0
    after = await route_one(system, 901, "Il lettore di badge della mensa non legge la tessera")
    assert after["category"] == "general"
    assert after["history"][0]["decided_by"] == "default"
    assert after["history"][0]["model_version"] is None


async def test_a_new_install_starts_from_an_export_of_its_previous_tool(
        system: System, tmp_path: Path) -> None:
    """``python -m sportello_routing train --csv``: the export's rows become lessons, a model
    is trained and put in use, and a running replica routes with it."""
    routing = await system.start("routing", TRIAGE_MIN_LESSONS="20", TRIAGE_MIN_PER_CLASS="4",
                                 TRIAGE_MAX_TERMS="5000")
    await system.start("intake")
    export = tmp_path / "export.csv"
    with export.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(["Subject", "Body", "Category", "Team"])
        for copy in range(3):
            for category, lines in TOPICS.items():
                for line in lines:  # the previous tool's own spelling: made slugs on import
                    writer.writerow([line.capitalize(), f"richiesta {copy}",
                                     category.title(), "Service Desk"])
        writer.writerow(["", "", "Hardware", ""])  # nothing to learn from: skipped
    imported = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "sportello_routing", "train", "--csv",
                         str(export), "--text-columns", "Subject,Body",
                         "--label-column", "Category", "--group-column", "Team"],
        env={**os.environ, **routing.env}, capture_output=True, text=True, timeout=300)
    assert imported.returncode == 0, imported.stderr
    assert "63 lessons read" in imported.stderr
    assert "in use" in imported.stderr

    async with system.client("routing") as client:
        async def loaded() -> int | None:
            return await model_in_use(client) or None
        version = await eventually(loaded, timeout=30, what="the running replica loaded it")
        models = (await client.get("/triage/models")).json()
        assert models["in_use"] == version
        record = models["models"][0]
        assert (record["trigger"], record["actor"]) == ("import", "command line")
        # One team only: nothing to choose between, so no group head.
        assert set(record["quality"]) == {"category"}
        wrong = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-m", "sportello_routing", "train", "--csv",
                             str(export), "--text-columns", "Title",
                             "--label-column", "Category"],
            env={**os.environ, **routing.env}, capture_output=True, text=True, timeout=120)
        assert wrong.returncode != 0
        assert "no column 'Title'" in wrong.stderr
    routed = await route_one(system, 902, "Excel si chiude aprendo il file del budget")
    assert routed["category"] == "software"
    assert routed["history"][0]["decided_by"] == "model"
