"""The Kubernetes manifests, as `kubectl kustomize` builds each overlay, know every service
the code has, with the image the Dockerfile builds: a service added to the code and
forgotten in deploy/ fails here, and so does an overlay that no longer builds."""

from __future__ import annotations

import importlib
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from sportello_runtime.settings import ServiceSettings

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
    for name in services_in_the_code():
        assert f"./services/{name}" in dockerfile, f"the image does not install {name}"
    assert re.search(r"^USER 10001$", dockerfile, re.M)
    assert dockerfile.count("FROM ") == 2  # wheels built apart from the image that runs
    ports = container(named("base", "Deployment")["intake"])["ports"]
    exposed = set(re.findall(r"^EXPOSE (.+)$", dockerfile, re.M)[0].split())
    assert {str(p["containerPort"]) for p in ports} <= exposed
    for service in services_in_the_code():
        assert f"./services/{service}" in dockerfile, service


KUBERNETES_VERSION = "1.30.0"
OPERATORS_KINDS = {"ScaledObject", "TriggerAuthentication", "RabbitmqCluster", "MongoDBCommunity"}
"""Custom resources of KEDA and the two operators: their schemas come with the operators'
CRDs, not with Kubernetes; what the tests above check of them is all that is checked here."""


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_validates_against_the_kubernetes_schema(overlay: str) -> None:
    checked = 0
    for doc in built(overlay):
        if doc["kind"] in OPERATORS_KINDS:
            continue
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            raise AssertionError(f"{overlay}: {doc['kind']}/{doc['metadata']['name']}: "
                                 f"{exc.message} at {list(exc.path)}") from exc
        checked += 1
    assert checked >= 3 * len(services_in_the_code())  # Deployment, Service, PDB at least


def settings_of(service: str) -> type[ServiceSettings]:
    module = importlib.import_module(f"sportello_{service}.settings")
    [found] = [v for v in vars(module).values() if isinstance(v, type)
               and issubclass(v, ServiceSettings) and v is not ServiceSettings]
    return found


def documented_secrets() -> set[str]:
    """The keys the base's instructions put in the sportello-secrets Secret."""
    text = (K8S / "base" / "kustomization.yaml").read_text()
    return set(re.findall(r"--from-literal=([A-Z_]+)=", text))


def test_every_secret_setting_of_the_code_is_given_in_the_manifests_and_compose() -> None:
    """A SecretStr setting a service needs in production (its signing keys, the channels'
    keys, the service token) is in the Secret the base documents, and in Compose's .env."""
    compose = (ROOT / "deploy" / "compose" / "secrets.sh").read_text()
    for service in services_in_the_code():
        for name, field in settings_of(service).model_fields.items():
            annotation = str(field.annotation)
            if "SecretStr" not in annotation:
                continue
            assert name.upper() in documented_secrets(), (service, name)
            assert f"{name.upper()}=" in compose, (service, name)



def test_each_deployment_listens_where_its_service_sends_and_intake_exposes_smtp() -> None:
    services = named("base", "Service")
    for name, deployment in named("base", "Deployment").items():
        ports = {p["name"]: p["containerPort"] for p in container(deployment)["ports"]}
        assert ports["http"] == 8000, name  # the ConfigMap's SERVICE_PORT
        for port in services[name]["spec"]["ports"]:
            assert port["targetPort"] in ports, (name, port)
    assert "smtp" in {p["name"] for p in services["intake"]["spec"]["ports"]}


COMPOSE = ROOT / "deploy" / "compose"


def test_the_compose_file_parses_and_runs_every_service_with_what_watches_them() -> None:
    compose = yaml.safe_load((COMPOSE / "compose.yaml").read_text())
    services = compose["services"]
    assert {"rabbitmq", "mongo", "prometheus", "grafana", "otel-collector", "jaeger"} <= set(
        services)
    ports = {"gateway": 8000, "intake": 8001, "routing": 8002, "sla": 8003, "knowledge": 8004,
             "analytics": 8005}
    for name in services_in_the_code():
        service = services[name]
        assert service["command"] == ["python", "-m", f"sportello_{name}"], name
        assert service["environment"]["MONGO_DATABASE"] == f"sportello_{name}", name
        assert f"{ports[name]}:8000" in service["ports"], name
        assert service["image"] == container(named("base", "Deployment")[name])["image"]
    assert "--replSet" in services["mongo"]["command"]
    plugins = (COMPOSE / "rabbitmq" / "enabled_plugins").read_text()
    assert "rabbitmq_prometheus" in plugins
    assert "rabbitmq_management" in plugins
    scraped = yaml.safe_load((COMPOSE / "prometheus.yml").read_text())
    jobs = {job["job_name"] for job in scraped["scrape_configs"]}
    assert {f"sportello-{name}" for name in services_in_the_code()} <= jobs
    volumes = " ".join(services["grafana"]["volumes"])
    assert "../monitoring/dashboards" in volumes
    assert "../monitoring/rules.yaml" in " ".join(services["prometheus"]["volumes"])
    required = set(re.findall(r"\$\{([A-Z_]+):\?", (COMPOSE / "compose.yaml").read_text()))
    written = (COMPOSE / "secrets.sh").read_text()
    assert all(f"{name}=" in written for name in required), required
