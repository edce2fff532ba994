"""`make bench-web`: what the web application costs a browser.

1. First-load bundle: the files `index.html` pulls for the login page, and everything a
   logged-in supervisor's browser fetches to show the overview, in gzip bytes (the gateway
   sends the build's precompressed `.gz`).
2. Time to interactive of the overview (一张图) on loopback: navigation start to the moment
   the map with every enterprise is painted and the live stream is open (the page sets
   `window.__ecowattOverviewReady` two animation frames after its first full render), with a
   warm HTTP cache (assets are immutable) — median and worst of `--loads` loads — for the
   200-enterprise city `make run` seeds and a 3,000-enterprise city.
3. Live updates: frames during `--watch` seconds of the real stream (the simulator's city),
   then a replay of batches as large as the city (one state change for every enterprise,
   once a second) through the page's own store: long frames (> 50 ms) and the longest.

Each city is a standalone platform (`python -m ecowatt_standalone`) on private ports with its
own data folder, the simulator on; Chromium is Debian's (`make chromium`).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform as host
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parent.parent
DIST = ROOT / "web" / "dist"
CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
FIRST_PASSWORD = "Bench!Web-Start-2026"  # noqa: S105 - throwaway benchmark account
PASSWORD = "Bench!Web-Root-2026x"  # noqa: S105


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def gz_size(path: Path) -> int:
    packed = path.with_name(path.name + ".gz")
    return packed.stat().st_size if packed.exists() else len(gzip.compress(path.read_bytes(), 9))


def login_bundle() -> dict[str, Any]:
    html = (DIST / "index.html").read_text()
    files = sorted(set(re.findall(r'(?:src|href)="(/assets/[^"]+)"', html)))
    sizes = {name: gz_size(DIST / name.lstrip("/")) for name in files}
    sizes["/index.html"] = gz_size(DIST / "index.html")
    return {"files": len(sizes), "gzip_bytes": sum(sizes.values()), "by_file": sizes}


def start(enterprises: int, data: Path, simulator: bool) -> tuple[subprocess.Popen[bytes], str]:
    http = free_port()
    env = {
        **os.environ,
        # The platform `make run` starts: development seeds the synthetic city and runs its
        # simulator (bench-* targets export `test`, where neither happens).
        "ECOWATT_ENVIRONMENT": "development",
        # `--no-simulator`: the city without its 3,000 simulated loggers in the platform's
        # process, to tell the page's own cost from the simulator's share of the cores.
        "ECOWATT_SIMULATOR_ENABLED": "true" if simulator else "false",
        "ECOWATT_DATA_DIR": str(data),
        "ECOWATT_HTTP_PORT": str(http),
        "ECOWATT_OPERATIONS_PORT": str(free_port()),
        "ECOWATT_STANDALONE_PG_PORT": str(free_port()),
        "ECOWATT_STANDALONE_REDIS_PORT": str(free_port()),
        "ECOWATT_HJ212_PORT": str(free_port()),
        "ECOWATT_ADMIN_PASSWORD": FIRST_PASSWORD,
        "ECOWATT_GATEWAY_WEB_DIR": str(DIST),
        "ECOWATT_REGISTRY_SEED_ENTERPRISES": str(enterprises),
        "ECOWATT_LOG_LEVEL": "WARNING",
    }
    log = (data / "platform.log").open("wb")  # read it when a city is not ready in time
    process = subprocess.Popen(
        [sys.executable, "-m", "ecowatt_standalone"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    return process, f"http://127.0.0.1:{http}"


def wait_ready(
    process: subprocess.Popen[bytes], url: str, enterprises: int, simulator: bool
) -> str:
    """The admin's bearer token once the city is seeded and every enterprise is on the map
    (and, with the simulator, its devices are coming online)."""
    deadline = time.monotonic() + 1800
    while time.monotonic() < deadline:
        assert process.poll() is None, "the platform exited"
        try:
            if httpx.get(f"{url}/api/auth/jwks.json", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(1)
    httpx.post(
        f"{url}/api/auth/password",
        json={"username": "admin", "password": FIRST_PASSWORD, "new_password": PASSWORD},
        timeout=60,
    ).raise_for_status()
    token = httpx.post(
        f"{url}/api/auth/token", json={"username": "admin", "password": PASSWORD}, timeout=60
    ).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    while time.monotonic() < deadline:
        overview = httpx.get(
            f"{url}/api/alarm/overview", params={"page_size": 1}, headers=headers, timeout=60
        )
        online = httpx.get(
            f"{url}/api/ingest-hj212/devices",
            params={"status": "online", "page_size": 1},
            headers=headers,
            timeout=60,
        )
        # Unknown query parameters are refused (422): say so instead of waiting 30 minutes.
        overview.raise_for_status()
        online.raise_for_status()
        devices_online = online.json().get("total", 0) > 0 or not simulator
        if overview.json().get("total") == enterprises and devices_online:
            return str(token)
        time.sleep(5)
    raise SystemExit("the city was not ready within 30 minutes")


FRAMES_JS = """async ([watchMs, replayMs]) => {
  const live = window.__ecowattLive
  const frameTimes = async (ms, during) => {
    const gaps = []
    let last = performance.now()
    let running = true
    const tick = (t) => {
      gaps.push(t - last)
      last = t
      if (running) requestAnimationFrame(tick)
    }
    requestAnimationFrame(tick)
    const stop = during ? during() : null
    await new Promise((resolve) => setTimeout(resolve, ms))
    running = false
    if (stop) stop()
    return gaps
  }
  const stats = (gaps) => {
    const sorted = [...gaps].sort((a, b) => a - b)
    return {
      frames: gaps.length,
      long_frames: gaps.filter((g) => g > 50).length,
      max_frame_ms: Math.round(sorted[sorted.length - 1]),
      p99_frame_ms: Math.round(sorted[Math.floor(sorted.length * 0.99)]),
    }
  }
  const before = live.version
  const real = await frameTimes(watchMs)
  const realBatches = live.version - before
  const ids = [...live.enterprises.keys()]
  const states = ['running', 'stopped', 'offline', 'standby']
  let round = 0
  const replay = await frameTimes(replayMs, () => {
    const timer = setInterval(() => {
      round += 1
      live.apply(ids.map((id, n) => {
        const facility = Object.keys(live.enterprises.get(id).facilities)[0] ?? 'F'
        const state = states[(round + n) % states.length]
        return { type: 'facility', enterprise_id: id, facility_id: facility, state }
      }))
    }, 1000)
    return () => clearInterval(timer)
  })
  return {
    real: { batches: realBatches, ...stats(real) },
    replay: { batches: round, items_per_batch: ids.length, ...stats(replay) },
  }
}"""


def overview_ready(page: Any, console: list[str]) -> None:
    """Wait for the overview; if it never comes, print what the page showed and said."""
    try:
        page.wait_for_function("window.__ecowattOverviewReady", timeout=120_000)
    except Exception:
        print(json.dumps({"not_ready_at": page.url, "console": console[-20:]}), flush=True)
        print(page.inner_text("body")[:2000], flush=True)
        raise


def measure(url: str, loads: int, watch_s: float, replay_s: float) -> dict[str, Any]:
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            tempfile.mkdtemp(prefix="ecowatt-bench-"),
            executable_path=CHROMIUM,
            headless=True,
            args=ARGS,
            viewport={"width": 1440, "height": 900},
            locale="zh-CN",
        )
        page = context.new_page()
        fetched: dict[str, int] = {}

        def record(response: Any) -> None:
            path = response.url.split(url, 1)[-1].split("?")[0]
            if not path.startswith("/api/") and (DIST / path.lstrip("/")).is_file():
                fetched[path] = gz_size(DIST / path.lstrip("/"))

        page.on("response", record)
        # what the page said, printed if it never becomes ready
        console: list[str] = []
        page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
        page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
        page.goto(f"{url}/login")
        page.fill("input[data-test=username]", "admin")
        page.fill("input[data-test=password]", PASSWORD)
        page.click("[data-test=login]")
        overview_ready(page, console)
        first_load = {"files": len(fetched), "gzip_bytes": sum(fetched.values())}
        times = []
        for _ in range(loads):
            page.goto(f"{url}/overview")
            overview_ready(page, console)
            times.append(page.evaluate("window.__ecowattOverviewReady"))
        enterprises = page.evaluate("window.__ecowattLive.enterprises.size")
        frames = page.evaluate(FRAMES_JS, [watch_s * 1000, replay_s * 1000])
        context.close()
    return {
        "enterprises_on_map": enterprises,
        "overview_first_load": first_load,
        "tti_ms": {
            "median": round(statistics.median(times)),
            "worst": round(max(times)),
            "all": [round(t) for t in times],
        },
        "live": frames,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cities", default="200,3000")
    parser.add_argument("--loads", type=int, default=5)
    parser.add_argument("--watch", type=float, default=20.0)
    parser.add_argument("--replay", type=float, default=10.0)
    parser.add_argument(
        "--no-simulator",
        dest="simulator",
        action="store_false",
        help="no simulated devices in the platform (live figures then come from the replay)",
    )
    args = parser.parse_args()
    if not (DIST / "index.html").is_file():
        raise SystemExit("web/dist is not built: run `make web`")
    results: dict[str, Any] = {
        "machine": {
            "cores": os.cpu_count(),
            "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30),
            "python": host.python_version(),
            "note": "shared with other sessions",
        },
        "login_bundle": login_bundle(),
    }
    for size in (int(s) for s in args.cities.split(",")):
        with tempfile.TemporaryDirectory(prefix="ecowatt-bench-web-") as data:
            process, url = start(size, Path(data), args.simulator)
            try:
                started = time.monotonic()
                try:
                    wait_ready(process, url, size, args.simulator)
                except (SystemExit, AssertionError, httpx.HTTPError):
                    tail = (Path(data) / "platform.log").read_bytes()[-4000:]
                    print(tail.decode(errors="replace"), file=sys.stderr)
                    raise
                ready_s = round(time.monotonic() - started)
                figures = measure(url, args.loads, args.watch, args.replay)
                results[f"city_{size}"] = {
                    "ready_after_s": ready_s,
                    "simulator": args.simulator,
                    **figures,
                }
            finally:
                process.send_signal(signal.SIGINT)
                try:
                    process.wait(timeout=120)
                except subprocess.TimeoutExpired:
                    process.kill()
        print(json.dumps(results[f"city_{size}"], ensure_ascii=False), flush=True)
    results["login_bundle"].pop("by_file")
    print(json.dumps(results, ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
