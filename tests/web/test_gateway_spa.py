"""The gateway serves the web application's build: files, client-side routes, the build's
precompressed copies to browsers that accept gzip, and nothing outside the build folder."""

from __future__ import annotations

import gzip
from pathlib import Path

import httpx
import pytest
from ecowatt_auth.gateway.app import Gateway


@pytest.fixture
def build(tmp_path: Path) -> Path:
    dist = tmp_path / "dist"
    (dist / "assets").mkdir(parents=True)
    (dist / "index.html").write_text("<!doctype html><title>登录</title><div id=app></div>")
    script = "console.log('监管');" * 200
    (dist / "assets" / "index-abc123.js").write_text(script)
    (dist / "assets" / "index-abc123.js.gz").write_bytes(gzip.compress(script.encode()))
    (tmp_path / "secret.txt").write_text("outside the build")
    return dist


def client(build: Path) -> httpx.AsyncClient:
    gateway = Gateway(forwarders={}, runtime=lambda: None, web_dir=build)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=gateway), base_url="http://gw")


async def test_files_routes_and_compression(build: Path) -> None:
    async with client(build) as http:
        plain = await http.get("/assets/index-abc123.js", headers={"Accept-Encoding": "identity"})
        assert plain.status_code == 200
        assert plain.headers["content-type"].startswith("text/javascript")
        assert "content-encoding" not in plain.headers
        assert plain.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert plain.text.startswith("console.log")

        packed = await http.get("/assets/index-abc123.js", headers={"Accept-Encoding": "gzip"})
        assert packed.headers["content-encoding"] == "gzip"
        assert packed.headers["vary"] == "accept-encoding"
        assert int(packed.headers["content-length"]) < len(plain.content) / 5
        assert packed.text == plain.text  # httpx decodes it: the same file

        route = await http.get("/alarms/42")
        assert route.status_code == 200 and "登录" in route.text
        assert route.headers["cache-control"] == "no-cache"
        assert route.headers["x-frame-options"] == "DENY"


async def test_nothing_outside_the_build_is_served(build: Path) -> None:
    async with client(build) as http:
        for path in ("/../secret.txt", "/assets/../../secret.txt", "/%2e%2e/secret.txt"):
            answer = await http.get(path)
            assert "outside the build" not in answer.text
        refused = await http.post("/index.html")
        assert refused.status_code == 405
