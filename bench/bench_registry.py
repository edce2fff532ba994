"""`make bench-registry`: import a 3,000-enterprise workbook, then time the list endpoints.

1. The synthetic city generator builds a 3,000-enterprise archive (about 30,000 points,
   no planted defects) and it is written as the registry's own workbook (.xlsx), the way an
   export of a real archive looks. Device passwords are left out (see docs/benchmarks.md).
2. A fresh database; the registry app (Kafka bus, real PostgreSQL) imports the workbook
   through `POST /import`; the clock runs from the upload to the response (parse, validate,
   write, history and outbox rows in one transaction).
3. The relay's time to publish the outbox to Kafka is reported separately.
4. p50/p95 latency of the main list endpoints (page of 50, filters, search), N requests each
   after a warm-up, in-process over ASGI (no network).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import time
from datetime import UTC, datetime

import httpx
from asgi_lifespan import LifespanManager
from ecowatt_kernel.app import create_app
from ecowatt_kernel.contracts import TOPICS
from ecowatt_kernel.db import scratch_database
from ecowatt_kernel.excel import Sheet, write_workbook
from ecowatt_kernel.identity import DataScope, Identity, Role, TokenSigner, dev_key_pair
from ecowatt_kernel.outbox import pending_count
from ecowatt_registry.database import OUTBOX
from ecowatt_registry.excel.columns import SHEETS, render_row
from ecowatt_registry.service import SERVICE
from ecowatt_registry.settings import RegistrySettings
from ecowatt_registry.synthetic.generator import CityOptions, generate_city
from infra_env import infra
from pydantic import SecretStr

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def build_workbook(enterprises: int, seed: int) -> tuple[bytes, dict[str, int]]:
    city = generate_city(CityOptions(enterprises=enterprises, seed=seed, defect_share=0))
    sheets = [
        Sheet(
            sheet.title, sheet.columns, [render_row(sheet, row) for row in city.states[sheet.kind]]
        )
        for sheet in SHEETS
    ]
    return write_workbook(sheets), {kind: len(rows) for kind, rows in city.states.items()}


async def main(enterprises: int, seed: int, requests: int) -> None:
    started = time.perf_counter()
    data, counts = await asyncio.to_thread(build_workbook, enterprises, seed)
    print(
        f"workbook: {len(data) / 1e6:.1f} MB, {counts} "
        f"(built in {time.perf_counter() - started:.1f} s)"
    )

    async with scratch_database(infra("DATABASE_URL"), prefix="ecowatt_bench") as db_url:
        settings = RegistrySettings(
            environment="test",
            bus_backend="kafka",
            kafka_bootstrap_servers=infra("KAFKA_BOOTSTRAP_SERVERS"),
            database_url=SecretStr(db_url),
            redis_url=SecretStr(infra("REDIS_URL")),
            log_level="WARNING",
        )
        signer = TokenSigner(dev_key_pair()[0], issuer="ecowatt-auth", audience="ecowatt")
        headers = {
            "Authorization": "Bearer "
            + signer.sign(
                Identity(subject="bench", roles=frozenset({Role.ADMIN}), scope=DataScope(all=True))
            )
        }
        officer = {
            "Authorization": "Bearer "
            + signer.sign(
                Identity(
                    subject="officer",
                    roles=frozenset({Role.DISTRICT_OFFICER}),
                    scope=DataScope(districts=frozenset({"610112", "610116"})),
                )
            )
        }
        app = create_app(SERVICE, settings=settings)
        async with LifespanManager(app, startup_timeout=120, shutdown_timeout=120) as manager:
            await app.state.context.bus.ensure_topics([TOPICS["registry.changes"]])
            transport = httpx.ASGITransport(app=manager.app)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://r", timeout=600
            ) as client:
                started = time.perf_counter()
                response = await client.post(
                    "/import", files={"file": ("city.xlsx", data, XLSX)}, headers=headers
                )
                import_s = time.perf_counter() - started
                assert response.status_code == 200, response.text[:2000]
                sheets = response.json()["sheets"]
                print(
                    f"import: {import_s:.1f} s; created per sheet: "
                    + ", ".join(f"{t} {c['created']}" for t, c in sheets.items())
                )
                started = time.perf_counter()
                engine = app.state.context.database.engine
                for _ in range(3000):  # at most 10 minutes
                    if not await pending_count(engine, OUTBOX):
                        break
                    await asyncio.sleep(0.2)
                print(
                    f"relay: outbox published to Kafka {time.perf_counter() - started:.1f} s "
                    "after the import returned"
                )

                endpoints = [
                    ("GET /enterprises", "/enterprises", {}, headers),
                    (
                        "GET /enterprises?district=…&industry=C&sort=-updated_at",
                        "/enterprises",
                        {"district": "610112", "industry": "C", "sort": "-updated_at"},
                        headers,
                    ),
                    ("GET /enterprises?q=…", "/enterprises", {"q": "华"}, headers),
                    ("GET /enterprises (district officer)", "/enterprises", {}, officer),
                    ("GET /facilities?kind=control", "/facilities", {"kind": "control"}, headers),
                    ("GET /points", "/points", {}, headers),
                    (
                        "GET /points?district=…&point_type=control",
                        "/points",
                        {"district": "610116", "point_type": "control"},
                        headers,
                    ),
                    ("GET /devices", "/devices", {}, headers),
                    ("GET /control-groups", "/control-groups", {}, headers),
                    ("GET /history?entity=point", "/history", {"entity": "point"}, headers),
                ]
                print("| Endpoint | p50 ms | p95 ms |")
                print("|---|---|---|")
                for label, path, params, auth in endpoints:
                    for _ in range(5):
                        assert (
                            await client.get(path, params=params, headers=auth)
                        ).status_code == 200
                    times = []
                    for _ in range(requests):
                        t0 = time.perf_counter()
                        response = await client.get(path, params=params, headers=auth)
                        times.append((time.perf_counter() - t0) * 1000)
                        assert response.status_code == 200
                    times.sort()
                    p95 = times[max(0, int(len(times) * 0.95) - 1)]
                    print(f"| `{label}` | {statistics.median(times):.1f} | {p95:.1f} |")
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}; "
        f"{datetime.now(UTC):%Y-%m-%d}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--enterprises", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    asyncio.run(main(args.enterprises, args.seed, args.requests))
