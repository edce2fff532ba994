"""deploy/helm/ecowatt: `helm lint`, `helm template | kubeconform -strict` against the
Kubernetes 1.33 schemas (from the `kubernetes-validate` wheel), and what the issue asks of
the rendered objects. ServiceMonitor and PrometheusRule are CRDs kubeconform has no schema
for: they are checked here (selectors match the Services; the rules are the promtool-tested
file and pass `promtool check rules`)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from ecowatt_kernel.migrate import load_spec

from tests.deploy.conftest import (
    DEPLOY,
    GATEWAY,
    GATEWAY_PORT,
    SERVICES,
    deploy_tool,
    kubernetes_schemas,
)

CHART = DEPLOY / "helm" / "ecowatt"
SECRETS = [
    "secrets.databaseUrl=postgresql://ecowatt:pw@pg:5432/ecowatt",
    "secrets.redisUrl=redis://:pw@redis:6379/0",
    "secrets.identityPublicKey=PUBLIC",
    "secrets.identityPrivateKey=PRIVATE",
    "secrets.authDataKey=a-data-key-of-at-least-32-characters",
]


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(deploy_tool("helm")), *args], capture_output=True, text=True, timeout=120, check=False
    )


def render(*sets: str) -> str:
    flags = [f for s in (*SECRETS, *sets) for f in ("--set", s)]
    done = helm("template", "ew", str(CHART), "--namespace", "ecowatt", *flags)
    assert done.returncode == 0, done.stderr
    return done.stdout


def objects(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


def by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def container_env(docs: list[dict[str, Any]], service: str) -> dict[str, dict[str, Any]]:
    """Variable name → entry of the one container of `service`'s Deployment."""
    deployment = by_kind(docs, "Deployment")[f"ew-ecowatt-{service}"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e for e in container["env"]}


@pytest.fixture(scope="module")
def rendered() -> str:
    return render()


@pytest.fixture(scope="module")
def docs(rendered: str) -> list[dict[str, Any]]:
    return objects(rendered)


def kubeconform(text: str, tmp: Path) -> subprocess.CompletedProcess[str]:
    version, folder = kubernetes_schemas()
    manifest = tmp / "rendered.yaml"
    manifest.write_text(text)
    return subprocess.run(
        [
            str(deploy_tool("kubeconform")),
            "-strict",
            "-summary",
            "-output",
            "json",
            "-kubernetes-version",
            version,
            "-schema-location",
            f"{folder}/{{{{ .NormalizedKubernetesVersion }}}}-standalone{{{{ .StrictSuffix }}}}"
            "/{{ .ResourceKind }}{{ .KindSuffix }}.json",
            "-skip",
            "ServiceMonitor,PrometheusRule",
            str(manifest),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_helm_lint_passes_and_requires_the_secrets() -> None:
    done = helm("lint", str(CHART), "--strict", *[f for s in SECRETS for f in ("--set", s)])
    assert done.returncode == 0, done.stdout + done.stderr
    missing = helm("template", "ew", str(CHART))
    assert missing.returncode != 0
    assert "secrets.databaseUrl (or secrets.existingSecret) is required" in missing.stderr


def test_every_object_is_valid_for_kubernetes(rendered: str, tmp_path: Path) -> None:
    done = kubeconform(rendered, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads(done.stdout)["summary"]
    assert summary["invalid"] == 0 and summary["errors"] == 0
    assert summary["skipped"] == 2  # ServiceMonitor, PrometheusRule: checked below
    assert summary["valid"] >= 30


def test_kubeconform_catches_a_wrong_object(rendered: str, tmp_path: Path) -> None:
    broken = rendered.replace("revisionHistoryLimit: 5", "revisionHistoryLimit: five", 1)
    done = kubeconform(broken, tmp_path)
    assert done.returncode != 0
    assert json.loads(done.stdout)["summary"]["invalid"] == 1


def test_a_deployment_per_service_with_probes_resources_and_security(
    docs: list[dict[str, Any]],
) -> None:
    deployments = by_kind(docs, "Deployment")
    assert set(deployments) == {f"ew-ecowatt-{name}" for name in SERVICES}
    for name, (module, port) in SERVICES.items():
        pod = deployments[f"ew-ecowatt-{name}"]["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert container["args"] == [module]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == 10001
        security = container["securityContext"]
        assert security["readOnlyRootFilesystem"] is True
        assert security["allowPrivilegeEscalation"] is False
        assert security["capabilities"]["drop"] == ["ALL"]
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["resources"]["requests"] and container["resources"]["limits"]
        env = {e["name"]: e for e in container["env"]}
        assert env["ECOWATT_HTTP_PORT"]["value"] == str(port)
        assert env["ECOWATT_DATABASE_URL"]["valueFrom"]["secretKeyRef"]["key"] == "DATABASE_URL"
        # the signing key and the TOTP key stay in auth; the others follow its key set
        assert ("ECOWATT_IDENTITY_PRIVATE_KEY" in env) == (name == GATEWAY), name
        assert ("ECOWATT_AUTH_DATA_KEY" in env) == (name == GATEWAY), name
        if name != GATEWAY:
            jwks = env["ECOWATT_IDENTITY_JWKS_URL"]["value"]
            assert jwks == f"http://ew-ecowatt-{GATEWAY}:{SERVICES[GATEWAY][1]}/jwks.json"
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            assert container[probe]["httpGet"]["port"] == "http", (name, probe)
        assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    config = by_kind(docs, "ConfigMap")["ew-ecowatt-config"]["data"]
    assert config["ECOWATT_ENVIRONMENT"] == "production"
    assert config["ECOWATT_BUS_BACKEND"] == "kafka"


def test_devices_reach_ingest_through_a_tcp_load_balancer_with_affinity(
    docs: list[dict[str, Any]],
) -> None:
    service = by_kind(docs, "Service")["ew-ecowatt-hj212"]["spec"]
    assert service["type"] == "LoadBalancer"
    assert service["ports"] == [
        {"name": "hj212", "port": 9212, "targetPort": "hj212", "protocol": "TCP"}
    ]
    assert service["sessionAffinity"] == "ClientIP"
    assert service["sessionAffinityConfig"]["clientIP"]["timeoutSeconds"] == 10800
    assert service["externalTrafficPolicy"] == "Local"
    assert service["selector"]["app.kubernetes.io/component"] == "ingest-hj212"


def test_autoscaling_disruption_budgets_and_the_gateway_ingress(docs: list[dict[str, Any]]) -> None:
    hpas = by_kind(docs, "HorizontalPodAutoscaler")
    # the gateway takes every request: it scales with the traffic
    assert set(hpas) == {"ew-ecowatt-validation", "ew-ecowatt-alarm", f"ew-ecowatt-{GATEWAY}"}
    assert hpas["ew-ecowatt-validation"]["spec"]["maxReplicas"] <= 12  # its topic's partitions
    deployments = by_kind(docs, "Deployment")
    for name in hpas:
        assert "replicas" not in deployments[name]["spec"]  # the HPA owns it
    pdbs = by_kind(docs, "PodDisruptionBudget")
    assert "ew-ecowatt-ops" not in pdbs  # one replica: a budget would block node drains
    assert set(pdbs) == {f"ew-ecowatt-{n}" for n in SERVICES if n != "ops"}
    (ingress,) = by_kind(docs, "Ingress").values()
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": f"ew-ecowatt-{GATEWAY}", "port": {"name": "gateway"}}


def test_auth_is_the_gateway_on_its_own_port(docs: list[dict[str, Any]]) -> None:
    assert "ew-ecowatt-gateway" not in by_kind(docs, "Deployment")  # one process, not two
    service = by_kind(docs, "Service")[f"ew-ecowatt-{GATEWAY}"]["spec"]
    ports = {p["name"]: (p["port"], p["targetPort"]) for p in service["ports"]}
    assert ports == {"http": (SERVICES[GATEWAY][1], "http"), "gateway": (GATEWAY_PORT, "gateway")}
    deployment = by_kind(docs, "Deployment")[f"ew-ecowatt-{GATEWAY}"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {
        "http": SERVICES[GATEWAY][1],
        "gateway": GATEWAY_PORT,
    }
    env = container_env(docs, GATEWAY)
    assert env["ECOWATT_GATEWAY_PORT"]["value"] == str(GATEWAY_PORT)
    assert env["ECOWATT_GATEWAY_HOST"]["value"] == "0.0.0.0"
    assert json.loads(env["ECOWATT_GATEWAY_TRUSTED_PROXIES"]["value"]) == []
    assert env["ECOWATT_AUTH_DATA_KEY"]["valueFrom"]["secretKeyRef"]["key"] == "AUTH_DATA_KEY"
    admin = env["ECOWATT_ADMIN_PASSWORD"]["valueFrom"]["secretKeyRef"]
    assert admin["key"] == "ADMIN_PASSWORD" and admin["optional"] is True
    for other in set(SERVICES) - {GATEWAY}:  # the other services are not gateways
        assert not {"ECOWATT_GATEWAY_PORT", "ECOWATT_GATEWAY_UPSTREAMS"} & set(
            container_env(docs, other)
        ), other


def test_trusted_proxies_and_the_admin_password_are_settings() -> None:
    docs = objects(
        render(
            "gateway.trustedProxies={10.244.0.0/16,10.96.0.0/12}",
            "secrets.adminPassword=First-Admin-2026",
        )
    )
    env = container_env(docs, GATEWAY)
    trusted = json.loads(env["ECOWATT_GATEWAY_TRUSTED_PROXIES"]["value"])
    assert trusted == ["10.244.0.0/16", "10.96.0.0/12"]
    secret = by_kind(docs, "Secret")["ew-ecowatt-secrets"]["stringData"]
    assert secret["ADMIN_PASSWORD"] == "First-Admin-2026"
    assert secret["AUTH_DATA_KEY"] == "a-data-key-of-at-least-32-characters"
    default = by_kind(objects(render()), "Secret")["ew-ecowatt-secrets"]["stringData"]
    assert "ADMIN_PASSWORD" not in default  # optional: auth generates one


def test_gateway_and_ops_point_at_the_rendered_services(docs: list[dict[str, Any]]) -> None:
    services = by_kind(docs, "Service")

    def value(service: str, variable: str) -> str:
        return str(container_env(docs, service)[variable]["value"])

    def own_port(url: str) -> None:
        host, port = url.removeprefix("http://").split(":")
        (http,) = (p for p in services[host]["spec"]["ports"] if p["name"] == "http")
        assert http["port"] == int(port), url

    upstreams = json.loads(value(GATEWAY, "ECOWATT_GATEWAY_UPSTREAMS"))
    assert set(upstreams) == set(SERVICES) - {GATEWAY}  # ops included: /api/ops/status
    pairs = dict(p.split("=", 1) for p in value("ops", "ECOWATT_OPS_SERVICE_URLS").split(","))
    assert set(pairs) == set(SERVICES) - {"ops"}  # auth at its operations port
    for url in (*upstreams.values(), *pairs.values()):
        own_port(url)


def test_existing_secret_replaces_the_chart_secret() -> None:
    done = helm("template", "ew", str(CHART), "--set", "secrets.existingSecret=city-secrets")
    assert done.returncode == 0, done.stderr
    docs = objects(done.stdout)
    assert not by_kind(docs, "Secret")
    (container,) = by_kind(docs, "Deployment")["ew-ecowatt-alarm"]["spec"]["template"]["spec"][
        "containers"
    ]
    refs = {
        e["valueFrom"]["secretKeyRef"]["name"]
        for e in container["env"]
        if "valueFrom" in e and "secretKeyRef" in e["valueFrom"]
    }
    assert refs == {"city-secrets"}


def test_setup_job_creates_topics_and_migrates_every_schema(docs: list[dict[str, Any]]) -> None:
    (job,) = by_kind(docs, "Job").values()
    annotations = job["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == "post-install,pre-upgrade"
    spec = job["spec"]["template"]["spec"]
    (topics,) = spec["initContainers"]
    assert topics["args"][:2] == ["ecowatt_kernel.bus.admin", "ensure-topics"]
    (migrations,) = spec["containers"]
    assert migrations["args"][0] == "ecowatt_kernel.migrate"
    schemas = {load_spec(path).schema for path in migrations["args"][1:]}
    assert schemas == {
        "auth",
        "registry",
        "ingest",
        "validation",
        "alarm",
        "control_plan",
        "reporting",
        "ops",
    }


def test_service_monitor_scrapes_every_service_on_its_own_port(docs: list[dict[str, Any]]) -> None:
    (monitor,) = by_kind(docs, "ServiceMonitor").values()
    selector = monitor["spec"]["selector"]
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["path"] == "/metrics" and endpoint["honorLabels"] is True
    assert {"targetLabel": "job", "replacement": "ecowatt"} in endpoint["relabelings"]
    scraped = {}
    for _name, service in by_kind(docs, "Service").items():
        labels = service["metadata"]["labels"]
        if all(labels.get(k) == v for k, v in selector["matchLabels"].items()) and all(
            labels.get(e["key"]) not in e["values"] for e in selector.get("matchExpressions", [])
        ):
            for port in service["spec"]["ports"]:
                if port["name"] == endpoint["port"]:
                    scraped[labels["app.kubernetes.io/component"]] = port["port"]
    # every service, auth included: its operations port serves /metrics, the gateway's not
    assert scraped == {name: port for name, (_, port) in SERVICES.items()}


def test_prometheus_rule_is_the_tested_rule_file(
    docs: list[dict[str, Any]], tmp_path: Path
) -> None:
    (rule,) = by_kind(docs, "PrometheusRule").values()
    source = yaml.safe_load((DEPLOY / "prometheus" / "rules" / "ecowatt.rules.yml").read_text())
    assert rule["spec"] == source
    extracted = tmp_path / "rules.yml"
    extracted.write_text(yaml.safe_dump(rule["spec"], allow_unicode=True))
    done = subprocess.run(
        [str(deploy_tool("promtool")), "check", "rules", str(extracted)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_grafana_dashboards_ship_in_a_config_map(docs: list[dict[str, Any]]) -> None:
    (dashboards,) = (d for n, d in by_kind(docs, "ConfigMap").items() if n.endswith("-dashboards"))
    assert dashboards["metadata"]["labels"]["grafana_dashboard"] == "1"
    files = sorted(p.name for p in (DEPLOY / "grafana" / "dashboards").glob("*.json"))
    assert sorted(dashboards["data"]) == files
    for name, text in dashboards["data"].items():
        assert json.loads(text) == json.loads(
            (DEPLOY / "grafana" / "dashboards" / name).read_text()
        )
