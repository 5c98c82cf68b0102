"""The Kubernetes manifests, as `kubectl kustomize` builds each overlay, know every service
the code has, with the image the Dockerfile builds: a service added to the code and
forgotten in deploy/ fails here, and so does an overlay that no longer builds."""

from __future__ import annotations

import re
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ("base", "overlays/dev", "overlays/prod")


def services_in_the_code() -> set[str]:
    return {p.name for p in (ROOT / "services").iterdir()
            if (p / f"sportello_{p.name}" / "__main__.py").exists()}


@cache
def built(overlay: str) -> tuple[dict[str, Any], ...]:
    kubectl = shutil.which("kubectl")
    assert kubectl, ("kubectl is needed to build the manifests: "
                     "deploy/local/ensure-package.sh kubectl kubectl")
    done = subprocess.run([kubectl, "kustomize", str(K8S / overlay)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, f"{overlay} does not build:\n{done.stderr}"
    return tuple(doc for doc in yaml.safe_load_all(done.stdout) if doc)


def named(overlay: str, kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for doc in built(overlay) if doc["kind"] == kind}


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    [only] = deployment["spec"]["template"]["spec"]["containers"]
    return dict(only)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_service_has_a_deployment_a_service_a_disruption_budget_and_scaling(
    overlay: str,
) -> None:
    services = services_in_the_code()
    assert services >= {"intake", "routing", "sla", "gateway", "knowledge"}
    assert set(named(overlay, "Deployment")) == services
    assert set(named(overlay, "Service")) == services
    assert set(named(overlay, "PodDisruptionBudget")) == services
    scalers = "ScaledObject" if overlay == "overlays/prod" else "HorizontalPodAutoscaler"
    assert set(named(overlay, scalers)) == services
    assert all(d["metadata"]["namespace"] == "sportello" for d in built(overlay)
               if d["kind"] != "Namespace")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_deployment_runs_its_own_service_with_probes_and_its_own_database(
    overlay: str,
) -> None:
    for name, deployment in named(overlay, "Deployment").items():
        c = container(deployment)
        assert c["command"] == ["python", "-m", f"sportello_{name}"], name
        env = {e["name"]: e for e in c.get("env", [])}
        assert env["MONGO_DATABASE"]["value"] == f"sportello_{name}", name
        assert c["readinessProbe"]["httpGet"]["path"] == "/health/ready", name
        assert c["livenessProbe"]["httpGet"]["path"] == "/health/live", name
        assert c["securityContext"]["runAsNonRoot"] is True, name
        assert c["resources"]["requests"]["cpu"], name


def test_the_urls_services_are_given_name_services_that_exist() -> None:
    services = set(named("base", "Service"))
    config = named("base", "ConfigMap")["sportello-config"]["data"]
    given = [(f"ConfigMap {k}", v) for k, v in config.items()]
    for name, deployment in named("base", "Deployment").items():
        given += [(f"{name} {e['name']}", e["value"]) for e in container(deployment).get("env", [])
                  if "value" in e]
    for where, value in given:
        key = where.split()[-1]
        if key.removesuffix("_URL").lower() in services_in_the_code():
            host = re.match(r"https?://([^/:]+)", value)
            assert host is not None, where
            assert host.group(1) in services, where


def test_production_runs_three_spread_replicas_on_the_operators_engines() -> None:
    engines = {d["kind"] for d in built("overlays/prod")}
    assert {"RabbitmqCluster", "MongoDBCommunity"} <= engines
    assert named("overlays/prod", "RabbitmqCluster")["sportello-rabbitmq"]["spec"]["replicas"] == 3
    assert named("overlays/prod", "MongoDBCommunity")["sportello-mongodb"]["spec"]["members"] == 3
    for name, deployment in named("overlays/prod", "Deployment").items():
        assert deployment["spec"]["replicas"] == 3, name
        spread = deployment["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
        term = spread["preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"]
        assert term["labelSelector"]["matchLabels"] == {"app.kubernetes.io/name": name}
        env = {e["name"]: e for e in container(deployment)["env"]}
        assert "sportello-rabbitmq.sportello.svc" in env["AMQP_URL"]["value"]
        assert env["MONGO_URL"]["valueFrom"]["secretKeyRef"]["name"].startswith(
            "sportello-mongodb")
    for name, scaled in named("overlays/prod", "ScaledObject").items():
        [trigger] = scaled["spec"]["triggers"]
        if trigger["type"] == "rabbitmq":
            assert trigger["metadata"]["queueName"] == f"sportello.{name}"
    for name, deployment in named("overlays/dev", "Deployment").items():
        assert deployment["spec"]["replicas"] == 1, name


def test_the_ingress_publishes_the_gateway_intakes_doors_and_self_service_only() -> None:
    [rule] = named("base", "Ingress")["sportello"]["spec"]["rules"]
    backends = {p["path"]: p["backend"]["service"]["name"] for p in rule["http"]["paths"]}
    assert backends == {"/": "gateway", "/channels": "intake", "/tickets": "intake",
                        "/public": "intake", "/help": "knowledge",
                        "/public/search": "knowledge", "/public/articles": "knowledge"}


def test_the_manifests_run_the_image_the_dockerfile_builds() -> None:
    dockerfile = (ROOT / "deploy" / "docker" / "Dockerfile").read_text()
    image = re.search(r"docker build .* -t (\S+) \.", dockerfile)
    assert image is not None
    for overlay in OVERLAYS:
        for name, deployment in named(overlay, "Deployment").items():
            assert container(deployment)["image"] == image.group(1), (overlay, name)
    ports = container(named("base", "Deployment")["intake"])["ports"]
    exposed = set(re.findall(r"^EXPOSE (.+)$", dockerfile, re.M)[0].split())
    assert {str(p["containerPort"]) for p in ports} <= exposed
    for service in services_in_the_code():
        assert f"./services/{service}" in dockerfile, service
