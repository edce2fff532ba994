"""The Dockerfile, checked by rules (no image is built: see docs/deploy.md, "Image").

No container registry is reachable from CI, so base images cannot be pulled and no builder
(buildah from Debian, or any other) can build here. Instead these hadolint-like rules,
parsed with `dockerfile-parse`, hold the properties the issue asks for: multi-stage, uv from
the lock file, non-root, read-only-root friendly, the web build included, the command
selecting the service.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from dockerfile_parse import DockerfileParser
from ecowatt_auth.settings import AuthSettings

from tests.deploy.conftest import ROOT, SERVICES, runnable_module

SERVICE_MODULES = {module for module, _ in SERVICES.values()} | {
    "ecowatt_kernel.bus.admin",
    "ecowatt_kernel.migrate",
}


@pytest.fixture(scope="module")
def parsed() -> DockerfileParser:
    parser = DockerfileParser(path=str(ROOT / "Dockerfile"))
    return parser


def stages(parsed: DockerfileParser) -> list[list[dict[str, Any]]]:
    result: list[list[dict[str, Any]]] = []
    for instruction in parsed.structure:
        if instruction["instruction"] == "FROM":
            result.append([])
        if result:
            result[-1].append(instruction)
    return result


def test_multi_stage_with_pinned_bases(parsed: DockerfileParser) -> None:
    found = stages(parsed)
    names = [s[0]["value"].split(" AS ")[-1].strip() for s in found]
    assert names == ["web", "build", "runtime"]
    args = {
        i["value"].split("=", 1)[0]: i["value"].split("=", 1)[1]
        for i in parsed.structure
        if i["instruction"] == "ARG" and "=" in i["value"]
    }
    for image in (args["PYTHON_IMAGE"], args["NODE_IMAGE"]):
        _, _, tag = image.partition(":")
        assert tag and tag != "latest" and re.search(r"\d+\.\d+\.\d+", tag), image


def test_dependencies_come_from_the_lock_file_with_pinned_uv(parsed: DockerfileParser) -> None:
    build = "\n".join(i["value"] for i in stages(parsed)[1])
    makefile = (ROOT / "Makefile").read_text()
    uv_version = re.search(r"UV_VERSION := (\S+)", makefile).group(1)  # type: ignore[union-attr]
    assert f"uv=={uv_version}" in build
    assert "uv sync --frozen --no-dev" in build and "--no-editable" in build
    assert "uv.lock" in build


def test_the_runtime_is_unprivileged_and_read_only_friendly(parsed: DockerfileParser) -> None:
    runtime = stages(parsed)[2]
    users = [i["value"] for i in runtime if i["instruction"] == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root")
    assert all(int(part) >= 10000 for part in users[-1].split(":"))
    env = " ".join(i["value"] for i in runtime if i["instruction"] == "ENV")
    assert "PYTHONDONTWRITEBYTECODE=1" in env  # nothing written next to the code
    copies = [i["value"] for i in runtime if i["instruction"] in ("COPY", "ADD")]
    # only built artefacts reach the runtime: no sources, no build tools
    assert all(c.startswith("--from=") for c in copies), copies
    assert any("/app/.venv" in c for c in copies) and any("web/dist" in c for c in copies)
    assert not [i for i in parsed.structure if i["instruction"] == "ADD"]


def test_the_web_build_is_included_when_web_exists(parsed: DockerfileParser) -> None:
    web = "\n".join(i["value"] for i in stages(parsed)[0])
    assert "web/package.json" in web and "npm ci" in web and "npm run build" in web
    assert "mkdir -p web/dist" in web  # no web/ yet: an empty build, not a failure


def test_the_gateway_is_told_where_the_web_build_is(parsed: DockerfileParser) -> None:
    runtime = stages(parsed)[2]
    (copy,) = [i["value"] for i in runtime if "web/dist" in i["value"]]
    target = copy.split()[-1]
    env = dict(parsed.envs)
    variable = "ECOWATT_GATEWAY_WEB_DIR"
    assert env[variable] == target, (env, copy)
    # the variable is the one the gateway reads (settings prefix ECOWATT_)
    assert AuthSettings.model_config.get("env_prefix", "").upper() == "ECOWATT_"
    assert variable.removeprefix("ECOWATT_").lower() in AuthSettings.model_fields


def test_the_command_selects_the_service(parsed: DockerfileParser) -> None:
    runtime = stages(parsed)[2]
    entrypoint = [i["value"] for i in runtime if i["instruction"] == "ENTRYPOINT"][-1]
    cmd = [i["value"] for i in runtime if i["instruction"] == "CMD"][-1]
    assert entrypoint == '["python", "-m"]'  # exec form: signals reach Python
    assert cmd.startswith("[")
    for module in SERVICE_MODULES:
        assert runnable_module(module), module


def test_dockerignore_keeps_local_state_out() -> None:
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".git", ".venv", ".tools", ".infra", ".data"} <= ignored
    for member in ("libs", "services", "simulator", "standalone", "web", "uv.lock"):
        assert member not in ignored
