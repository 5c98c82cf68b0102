"""The Kubernetes manifests know every service the code has, with the image the
Dockerfile builds: a service added to the code and forgotten in deploy/ fails here."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = ROOT / "deploy" / "k8s" / "sportello.yaml"


def services_in_the_code() -> set[str]:
    return {p.name for p in (ROOT / "services").iterdir()
            if (p / f"sportello_{p.name}" / "__main__.py").exists()}


def manifests() -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(MANIFEST.read_text()) if doc]


def named(kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for doc in manifests() if doc["kind"] == kind}


def test_every_service_has_a_deployment_a_service_and_a_disruption_budget() -> None:
    services = services_in_the_code()
    assert services >= {"intake", "routing", "sla"}
    assert set(named("Deployment")) == services
    assert set(named("Service")) == services
    assert set(named("PodDisruptionBudget")) == services


def test_each_deployment_runs_its_own_service_with_probes_and_its_own_database() -> None:
    for name, deployment in named("Deployment").items():
        [container] = deployment["spec"]["template"]["spec"]["containers"]
        assert container["command"] == ["python", "-m", f"sportello_{name}"], name
        env = {e["name"]: e.get("value") for e in container.get("env", [])}
        assert env["MONGO_DATABASE"] == f"sportello_{name}", name
        assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready", name
        assert container["livenessProbe"]["httpGet"]["path"] == "/health/live", name
        assert container["securityContext"]["runAsNonRoot"] is True, name


def test_the_urls_services_are_given_name_services_that_exist() -> None:
    services = set(named("Service"))
    for name, deployment in named("Deployment").items():
        [container] = deployment["spec"]["template"]["spec"]["containers"]
        for variable in container.get("env", []):
            if variable["name"].endswith("_URL") and variable["name"] != "PUBLIC_URL":
                host = re.match(r"https?://([^/:]+)", variable["value"])
                assert host is not None, (name, variable)
                assert host.group(1) in services, (name, variable)


def test_the_manifests_run_the_image_the_dockerfile_builds() -> None:
    dockerfile = (ROOT / "deploy" / "docker" / "Dockerfile").read_text()
    built = re.search(r"docker build .* -t (\S+) \.", dockerfile)
    assert built is not None
    for name, deployment in named("Deployment").items():
        [container] = deployment["spec"]["template"]["spec"]["containers"]
        assert container["image"] == built.group(1), name
    port = named("Deployment")["intake"]["spec"]["template"]["spec"]["containers"][0]["ports"]
    exposed = set(re.findall(r"^EXPOSE (.+)$", dockerfile, re.M)[0].split())
    assert {str(p["containerPort"]) for p in port} <= exposed
