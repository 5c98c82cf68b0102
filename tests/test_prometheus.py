"""A real Prometheus (Debian's package) against `make up` (deploy/local/up.sh, on the test's
own ports): every target is up, every rule loads and evaluates, and every dashboard
panel's query answers without error (Grafana sends them as they are, with ``$job`` set to
a service)."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from support.makeup import SERVICES, MakeUp, secrets_of
from support.proxy import free_port
from support.tickets import ticket_body
from support.wait import eventually

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[1]
MONITORING = ROOT / "deploy" / "monitoring"


def panel_queries() -> Iterator[tuple[str, str, str]]:
    for path in sorted((MONITORING / "dashboards").glob("*.json")):
        board = json.loads(path.read_text())
        for panel in board["panels"]:
            for target in panel["targets"]:
                yield path.stem, panel["title"], target["expr"]


def test_the_dashboards_are_the_ones_the_code_writes() -> None:
    """deploy/monitoring/dashboards.py is their source: edit it, then run it."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("dashboards", MONITORING / "dashboards.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for uid, (title, per_service, panels) in module.DASHBOARDS.items():
        written = json.loads((MONITORING / "dashboards" / f"{uid}.json").read_text())
        assert written == module.dashboard(uid, title, per_service, panels), uid
    assert {p.stem for p in (MONITORING / "dashboards").glob("*.json")} == set(module.DASHBOARDS)


def start_prometheus(binary: str, config: dict[str, Any], folder: Path,
                     port: int) -> subprocess.Popen[bytes]:
    (folder / "prometheus.yml").write_text(yaml.safe_dump(config))
    with (folder / "prometheus.log").open("wb") as log:
        return subprocess.Popen(
            [binary, f"--config.file={folder / 'prometheus.yml'}",
             f"--storage.tsdb.path={folder / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
            stdout=log, stderr=subprocess.STDOUT)


async def test_a_real_prometheus_scrapes_make_up_and_runs_every_rule_and_panel(
        tmp_path: Path) -> None:
    binary = shutil.which("prometheus")
    assert binary, "prometheus is needed: deploy/local/ensure-package.sh promtool prometheus"
    up = MakeUp(tmp_path / "run")
    try:
        await up.start()
        await watched(binary, up, tmp_path)
    finally:
        await up.forget()


async def watched(binary: str, up: MakeUp, tmp_path: Path) -> None:
    web_key = json.loads(secrets_of(up.run_dir)["CHANNEL_KEYS"])["web"]
    async with httpx.AsyncClient(timeout=10) as web:  # some series to show
        created = await web.post(f"{up.url('INTAKE_PORT')}/tickets",
                                 headers={"X-Api-Key": web_key}, json=ticket_body(1))
        assert created.status_code == 201, created.text
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(MONITORING / "rules.yaml")],
        "scrape_configs": [
            {"job_name": f"sportello-{name}",
             "static_configs": [{"targets": [f"127.0.0.1:{up.ports[port]}"]}]}
            for name, port in SERVICES.items()],
    }
    port = free_port()
    process = start_prometheus(binary, config, tmp_path, port)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as prom:
            async def ready() -> bool:
                """Prometheus answers 503 "Service Unavailable" (not JSON) on its API
                until it has loaded its storage and rules: wait for that first."""
                try:
                    return (await prom.get("/-/ready")).status_code == 200
                except httpx.HTTPError:
                    return False
            await eventually(ready, timeout=30, what="prometheus ready")

            async def api(path: str, **params: str) -> Any:
                try:
                    answer = await prom.get(f"/api/v1/{path}", params=params)
                except httpx.HTTPError:
                    return None
                body = answer.json()
                assert body["status"] == "success", (path, params, body)
                return body["data"]

            async def all_up() -> list[dict[str, Any]] | None:
                data = await api("targets")
                targets: list[dict[str, Any]] = data["activeTargets"] if data else []
                up = [t for t in targets if t["health"] == "up"]
                return targets if targets and len(up) == len(SERVICES) else None
            targets = await eventually(all_up, timeout=30, what="every target up")
            assert {t["labels"]["job"] for t in targets} == {f"sportello-{n}" for n in SERVICES}

            expected = yaml.safe_load((MONITORING / "rules.yaml").read_text())["groups"]

            async def evaluated() -> list[dict[str, Any]] | None:
                groups: list[dict[str, Any]] = (await api("rules"))["groups"]
                rules = [r for g in groups for r in g["rules"]]
                done = rules and all(r.get("health") == "ok" for r in rules)
                return groups if done and len(rules) == sum(len(g["rules"])
                                                            for g in expected) else None
            groups = await eventually(evaluated, timeout=30, what="every rule evaluated")
            assert sorted(g["name"] for g in groups) == sorted(g["name"] for g in expected)

            answered = 0
            for board, title, expr in panel_queries():
                data = await api("query", query=expr.replace("$job", "sportello-intake"))
                assert data is not None, (board, title)
                answered += 1
            assert answered >= 25
            answering = await api("query", query='up{job=~"sportello-.*"} == 1')
            assert len(answering["result"]) == len(SERVICES)
            opened = await api("query", query="sum(tickets_created_total)")
            assert float(opened["result"][0]["value"][1]) >= 1
    finally:
        process.terminate()
        process.wait(10)
