"""A real standalone platform on private ports with the web application's build, and Debian's
Chromium driven by Playwright (never a downloaded browser).

`make test` builds the application (`make web`) and installs Chromium (`make chromium`)
before pytest; run alone: `make web chromium && .venv/bin/pytest tests/web`. To look at a
platform you already run instead, set `ECOWATT_WEB_TEST_URL` and
`ECOWATT_WEB_TEST_ADMIN_PASSWORD` (its administrator's current password). Screenshots go to
`ECOWATT_SCREENSHOTS_DIR` when set (`make ui-screenshots` writes docs/ui/), else to the
test's temporary folder.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
WEB_DIST = ROOT / "web" / "dist"
CHROMIUM = Path(os.environ.get("ECOWATT_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
INITIAL_ADMIN_PASSWORD = "Web-Test!Start-2026"
ADMIN_PASSWORD = "Web-Test!Root-2026x"
START_LIMIT_S = 180.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Platform:
    """The platform under test and an administrator's bearer token for set-up."""

    base_url: str
    admin_password: str
    process: subprocess.Popen[bytes] | None = None
    token: str = ""
    shots: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="ecowatt-ui-")))

    def api(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=120,
        )

    def login_token(self) -> None:
        answer = httpx.post(
            f"{self.base_url}/api/auth/token",
            json={"username": "admin", "password": self.admin_password},
            timeout=120,
        )
        assert answer.status_code == 200, answer.text
        self.token = answer.json()["access_token"]

    def user_token(self, username: str, initial: str, password: str) -> str:
        """A bearer token of a new account, after its forced first password change."""
        changed = httpx.post(
            f"{self.base_url}/api/auth/password",
            json={"username": username, "password": initial, "new_password": password},
            timeout=120,
        )
        assert changed.status_code == 204, changed.text
        answer = httpx.post(
            f"{self.base_url}/api/auth/token",
            json={"username": username, "password": password},
            timeout=120,
        )
        assert answer.status_code == 200, answer.text
        return str(answer.json()["access_token"])

    def shorten_r1(self) -> None:
        """R1 confirms after one minute instead of 30 (a new rule version, as the rule page
        makes it), so the simulator's showcase faults become alarms quickly."""
        with self.api() as client:
            catalogue = client.get("/api/alarm/rules", params={"page_size": 100}).json()
            rules = {r["code"]: r for r in catalogue["items"]}
            if rules["R1"]["params"]["confirm_min"] != 1:
                answer = client.put(
                    "/api/alarm/rules/R1",
                    json={"params": {"confirm_min": 1}, "reason": "browser tests"},
                )
                assert answer.status_code == 200, answer.text

    def wait_for_r1(self, limit_s: float = 420.0) -> dict[str, Any]:
        """The first open R1 alarm (the simulator's showcase faults under a short R1)."""
        started = time.monotonic()
        with self.api() as client:
            while time.monotonic() - started < limit_s:
                answer = client.get(
                    "/api/alarm/alarms", params={"rule": "R1", "status": "open", "page_size": 50}
                )
                assert answer.status_code == 200, answer.text
                items = answer.json()["items"]
                if items:
                    return dict(items[0])
                time.sleep(3)
        raise AssertionError(f"no R1 alarm within {limit_s:.0f} s of shortening its period")

    def create_user(self, username: str, role: str, scope: dict[str, Any], password: str) -> str:
        with self.api() as client:
            answer = client.post(
                "/api/auth/users",
                json={
                    "username": username,
                    "display_name": username,
                    "role": role,
                    "scope": {"districts": [], "enterprises": [], "om_company": None, **scope},
                    "password": password,
                },
            )
        assert answer.status_code == 201, answer.text
        return str(answer.json()["id"])


def shoot(page: Any, platform: Platform, name: str) -> None:
    """Photograph the page into the screenshots folder (docs/ui/ with make ui-screenshots)."""
    platform.shots.mkdir(parents=True, exist_ok=True)
    page.wait_for_timeout(600)  # let charts finish their first paint
    page.screenshot(path=str(platform.shots / f"{name}.png"))


def login(page: Any, platform: Platform, username: str, password: str, new_password: str) -> None:
    """Log in; the first login asks for a new password (accounts start with an initial one)."""
    page.goto(f"{platform.base_url}/login")
    page.fill("input[data-test=username]", username)
    page.fill("input[data-test=password]", password)
    page.click("[data-test=login]")
    page.wait_for_selector("[data-test=password-form]")
    page.fill("input[data-test=current-password]", password)
    page.fill("input[data-test=new-password]", new_password)
    page.fill("input[data-test=repeat-password]", new_password)
    page.click("[data-test=change-password]")
    page.wait_for_selector("[data-test=login-form]")
    page.fill("input[data-test=password]", new_password)
    page.click("[data-test=login]")
    page.wait_for_selector("[data-test=user-menu]")


def _wait_healthy(process: subprocess.Popen[bytes], url: str) -> None:
    started = time.monotonic()
    while time.monotonic() - started < START_LIMIT_S:
        if process.poll() is not None:
            output = process.stdout.read().decode() if process.stdout else ""
            raise AssertionError(f"standalone exited early:\n{output[-3000:]}")
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                ready = httpx.get(f"{url}/api/auth/jwks.json", timeout=5)
                if ready.status_code == 200:
                    return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"the platform did not answer within {START_LIMIT_S:.0f} s")


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGINT)
    try:
        process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate(timeout=30)


@pytest.fixture(scope="session")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    assert (WEB_DIST / "index.html").is_file(), (
        "web/dist is not built: run `make web` (make test does it before pytest)"
    )
    assert CHROMIUM.exists(), (
        f"Debian's Chromium is missing at {CHROMIUM}: run `make chromium`"
        " (apt-get install -y chromium)"
    )
    shots_dir = os.environ.get("ECOWATT_SCREENSHOTS_DIR")
    external = os.environ.get("ECOWATT_WEB_TEST_URL")
    if external:
        platform = Platform(external.rstrip("/"), os.environ["ECOWATT_WEB_TEST_ADMIN_PASSWORD"])
        if shots_dir:
            platform.shots = Path(shots_dir)
        platform.login_token()
        yield platform
        return
    data = tmp_path_factory.mktemp("standalone")
    http = free_port()
    env = {
        **os.environ,
        "ECOWATT_DATA_DIR": str(data),
        "ECOWATT_HTTP_PORT": str(http),
        "ECOWATT_OPERATIONS_PORT": str(free_port()),
        "ECOWATT_STANDALONE_PG_PORT": str(free_port()),
        "ECOWATT_STANDALONE_REDIS_PORT": str(free_port()),
        "ECOWATT_HJ212_PORT": str(free_port()),
        "ECOWATT_ADMIN_PASSWORD": INITIAL_ADMIN_PASSWORD,
        "ECOWATT_GATEWAY_WEB_DIR": str(WEB_DIST),
        # The platform `make run` serves: the synthetic city seeded, its devices simulated,
        # the reduction list generated. Under pytest ECOWATT_ENVIRONMENT is `test`, which
        # (services fail closed) turns all three off and would leave the pages empty.
        "ECOWATT_ENVIRONMENT": "development",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "ecowatt_standalone"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    platform = Platform(f"http://127.0.0.1:{http}", ADMIN_PASSWORD, process=process)
    if shots_dir:
        platform.shots = Path(shots_dir)
    try:
        _wait_healthy(process, platform.base_url)
        changed = httpx.post(
            f"{platform.base_url}/api/auth/password",
            json={
                "username": "admin",
                "password": INITIAL_ADMIN_PASSWORD,
                "new_password": ADMIN_PASSWORD,
            },
            timeout=120,
        )
        assert changed.status_code == 204, changed.text
        platform.login_token()
        yield platform
    finally:
        _stop(process)


@pytest.fixture(scope="session")
def browser_context_factory() -> Iterator[Any]:
    """New, isolated browser profiles (one per person) on Debian's Chromium."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        contexts = []

        def new_context() -> Any:
            context = playwright.chromium.launch_persistent_context(
                tempfile.mkdtemp(prefix="ecowatt-chromium-"),
                executable_path=str(CHROMIUM),
                headless=True,
                args=CHROMIUM_ARGS,
                viewport={"width": 1360, "height": 860},
                locale="zh-CN",
                timezone_id="Asia/Shanghai",
                accept_downloads=True,
            )
            context.set_default_timeout(30_000)
            contexts.append(context)
            return context

        yield new_context
        for context in contexts:
            context.close()
