"""deploy/docker-compose.yml: valid against the compose specification, and coherent.

The compose specification's JSON schema is vendored in deploy/compose-spec/ (provenance in
its README). The file is checked as `docker compose config` would see it: variables
interpolated (required ones given dummy values), YAML anchors and merge keys resolved.
"""

from __future__ import annotations

import json
import re
from typing import Any

import jsonschema
import pytest
import yaml

from tests.deploy.conftest import DEPLOY, GATEWAY, GATEWAY_PORT, SERVICES, runnable_module

SCHEMA = DEPLOY / "compose-spec" / "compose_spec.json"
COMPOSE = DEPLOY / "docker-compose.yml"
VARIABLE = re.compile(r"\$\{([A-Z0-9_]+)(?::?[-?][^}]*)?\}")
# compose service → (module, HTTP port); ingest's compose name is short
ECOWATT_SERVICES = {
    ("ingest" if name == "ingest-hj212" else name): spec for name, spec in SERVICES.items()
}


def interpolate(text: str) -> str:
    """Replace ${VAR}, ${VAR:-default}, ${VAR:?error} as if every variable were set."""
    return VARIABLE.sub(lambda m: f"set-{m.group(1).lower()}", text).replace("$$", "$")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(interpolate(COMPOSE.read_text()))


def test_the_file_is_valid_against_the_compose_specification(compose: dict[str, Any]) -> None:
    schema = json.loads(SCHEMA.read_text())
    errors = sorted(
        jsonschema.Draft201909Validator(schema).iter_errors(compose), key=lambda e: e.path
    )
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors[:10])


def test_the_schema_rejects_a_broken_file(compose: dict[str, Any]) -> None:
    schema = json.loads(SCHEMA.read_text())
    broken = {**compose, "services": {"x": {"image": "a", "healthcheck": {"retries": "many"}}}}
    assert list(jsonschema.Draft201909Validator(schema).iter_errors(broken))


def test_every_ecowatt_service_runs_its_module_on_its_port(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, (module, port) in ECOWATT_SERVICES.items():
        service = services[name]
        assert service["command"][0] == module, name
        assert runnable_module(module), module
        env = service["environment"]
        assert env["ECOWATT_HTTP_PORT"] == str(port), name
        assert env["ECOWATT_ENVIRONMENT"] == "production", name
        assert f"127.0.0.1:{port}/readyz" in " ".join(service["healthcheck"]["test"]), name
        # read-only root, unprivileged, nothing kept outside /tmp
        assert service["read_only"] is True and service["user"] == "10001:10001", name
        assert service["tmpfs"] == ["/tmp"] and service["cap_drop"] == ["ALL"], name
    topics = services["kafka-topics"]["command"]
    assert runnable_module(topics[0]) and topics[1] == "ensure-topics"


def test_start_order_waits_on_healthchecks(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, service in services.items():
        for dependency, condition in service.get("depends_on", {}).items():
            assert dependency in services, (name, dependency)
            if condition["condition"] == "service_healthy":
                assert "healthcheck" in services[dependency], (name, dependency)
            if dependency == "kafka-topics":
                assert condition["condition"] == "service_completed_successfully"
    for name in ECOWATT_SERVICES:
        needs = services[name]["depends_on"]
        assert {"postgres", "redis", "kafka-topics"} <= set(needs), name


def test_the_monitoring_stack_is_there_and_scrapes_every_service(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for needed in (
        "kafka",
        "postgres",
        "redis",
        "prometheus",
        "alertmanager",
        "grafana",
        "postgres-exporter",
        "redis-exporter",
        "kafka-exporter",
    ):
        assert needed in services, needed
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    prometheus = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    targets = {
        target
        for job in prometheus["scrape_configs"]
        for config in job.get("static_configs", [])
        for target in config["targets"]
    }
    for name, (_, port) in ECOWATT_SERVICES.items():
        assert f"{name}:{port}" in targets, name
    assert f"{GATEWAY}:{GATEWAY_PORT}" not in targets  # the public port serves no /metrics
    for exporter, port in (
        ("postgres-exporter", 9187),
        ("redis-exporter", 9121),
        ("kafka-exporter", 9308),
    ):
        assert f"{exporter}:{port}" in targets


def own_port(services: dict[str, Any], url: str) -> tuple[str, str]:
    """(compose service, port) of `http://host:port`, checked to be that service's own port."""
    host, port = url.removeprefix("http://").split(":")
    assert services[host]["environment"]["ECOWATT_HTTP_PORT"] == port, url
    return host, port


def test_auth_is_the_gateway_on_the_published_port(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert "gateway" not in services  # one process: the auth service is the gateway
    auth = services[GATEWAY]
    env = auth["environment"]
    assert env["ECOWATT_GATEWAY_PORT"] == str(GATEWAY_PORT)
    assert env["ECOWATT_GATEWAY_HOST"] == "0.0.0.0"  # reachable from outside the container
    assert env["ECOWATT_HTTP_PORT"] != env["ECOWATT_GATEWAY_PORT"]
    # people reach the gateway port only; operations stay on the compose network
    published = {
        name: [p.rsplit(":", 1)[-1] for p in service.get("ports", [])]
        for name, service in services.items()
        if name in ECOWATT_SERVICES
    }
    assert published[GATEWAY] == [str(GATEWAY_PORT)]
    assert published["ingest"] == ["9212"]
    assert not [n for n, ports in published.items() if ports and n not in (GATEWAY, "ingest")]
    # every other service proxied at /api/<name>, ops included, at its own port
    upstreams = json.loads(env["ECOWATT_GATEWAY_UPSTREAMS"])
    assert set(upstreams) == set(SERVICES) - {GATEWAY}
    for url in upstreams.values():
        own_port(services, url)
    # the secrets of auth alone
    assert {"ECOWATT_IDENTITY_PRIVATE_KEY", "ECOWATT_AUTH_DATA_KEY"} <= set(env)
    for name in ECOWATT_SERVICES:
        others = services[name]["environment"]
        if name != GATEWAY:
            assert "ECOWATT_IDENTITY_PRIVATE_KEY" not in others, name
            assert "ECOWATT_AUTH_DATA_KEY" not in others, name
            jwks = others["ECOWATT_IDENTITY_JWKS_URL"]
            assert jwks == f"http://{GATEWAY}:{env['ECOWATT_HTTP_PORT']}/jwks.json", name


def test_ops_watches_every_other_service_on_its_own_port(compose: dict[str, Any]) -> None:
    services = compose["services"]
    value = services["ops"]["environment"]["ECOWATT_OPS_SERVICE_URLS"]
    pairs = dict(p.split("=", 1) for p in value.split(","))
    assert set(pairs) == set(SERVICES) - {"ops"}
    for url in pairs.values():
        own_port(services, url)
    assert pairs[GATEWAY].endswith(f":{SERVICES[GATEWAY][1]}")  # not the gateway's port


def test_mounted_files_exist() -> None:
    raw = yaml.safe_load(interpolate(COMPOSE.read_text()))
    for name, service in raw["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./") and not source.endswith("webhook-url"):  # a secret
                assert (DEPLOY / source).exists(), (name, source)
