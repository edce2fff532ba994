"""Launch, follow and lift an alert on a running platform (development and demonstrations).

    python -m ecowatt_control_plan.cli launch --level orange --hours 6 --ramp 20
    python -m ecowatt_control_plan.cli status                # the latest hour's statuses
    python -m ecowatt_control_plan.cli lift A1b2c3d4e5f6
    make alert LEVEL=orange RAMP=20                          # the same through make

It calls the control-plan API (`--url`, default the standalone gateway on
`ECOWATT_HTTP_PORT`) with development tokens: the order is proposed by `cli-issuer` and
approved by `cli-approver`, two city-supervisor identities, because an order needs a second
person's approval. Development tokens are signed with the development key, which services
refuse outside the development and test environments: in production orders are issued and
approved by people through the gateway.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from ecowatt_kernel.identity import DataScope, Identity, Role, signer_from_settings
from ecowatt_kernel.settings import KernelSettings

STATUSES = ("合规生产", "停工", "未响应停产", "未响应减产", "未开启治污设备", "离线/无法判定")


def _token(subject: str, role: Role) -> str:
    identity = Identity(
        subject=subject, name=subject, roles=frozenset({role}), scope=DataScope(all=True)
    )
    return signer_from_settings(KernelSettings()).sign(identity, ttl=timedelta(minutes=10))


def _client(url: str) -> httpx.Client:
    return httpx.Client(base_url=url.rstrip("/"), timeout=60.0)


def _check(response: httpx.Response) -> Any:
    if response.status_code >= 400:
        request = response.request
        sys.exit(f"{request.method} {request.url}: {response.status_code} {response.text}")
    return response.json()


def launch(args: argparse.Namespace) -> None:
    tz = ZoneInfo(KernelSettings().timezone)
    now = datetime.now(UTC).replace(microsecond=0)
    effective = now + timedelta(minutes=args.in_minutes)
    issuer = {"Authorization": f"Bearer {_token('cli-issuer', Role.CITY_SUPERVISOR)}"}
    approver = {"Authorization": f"Bearer {_token('cli-approver', Role.CITY_SUPERVISOR)}"}
    level_zh = {"yellow": "黄色", "orange": "橙色", "red": "红色"}[args.level]
    body: dict[str, Any] = {
        "name": args.name or f"重污染天气{level_zh}预警（演示）",
        "level": args.level,
        "origin": args.origin,
        "effective_at": effective.isoformat(),
        "expected_end": (effective + timedelta(hours=args.hours)).isoformat(),
        "districts": args.districts.split(",") if args.districts else [],
        "notice": f"自 {effective.astimezone(tz):%H:%M} 起启动{level_zh}预警响应。",
    }
    if args.ramp is not None:
        body["ramp_min"] = args.ramp
    with _client(args.url) as client:
        order = _check(client.post("/alerts", json=body, headers=issuer))
        change = order["changes"][0]["id"]
        result = _check(
            client.post(
                f"/alerts/{order['id']}/changes/{change}/approve",
                json={"note": "命令行演示：同意启动"},
                headers=approver,
            )
        )
    print(
        json.dumps(
            {
                "alert_id": order["id"],
                "level": args.level,
                "effective_at": effective.isoformat(),
                "tasks": result["tasks"],
                "status": result["alert"]["status"],
            },
            ensure_ascii=False,
        )
    )


def lift(args: argparse.Namespace) -> None:
    issuer = {"Authorization": f"Bearer {_token('cli-issuer', Role.CITY_SUPERVISOR)}"}
    approver = {"Authorization": f"Bearer {_token('cli-approver', Role.CITY_SUPERVISOR)}"}
    with _client(args.url) as client:
        change = _check(
            client.post(
                f"/alerts/{args.alert_id}/lift", json={"reason": args.reason}, headers=issuer
            )
        )
        result = _check(
            client.post(
                f"/alerts/{args.alert_id}/changes/{change['id']}/approve", json={}, headers=approver
            )
        )
    print(json.dumps({"alert_id": args.alert_id, "tasks": result["tasks"]}, ensure_ascii=False))


def status(args: argparse.Namespace) -> None:
    reader = {"Authorization": f"Bearer {_token('cli-reader', Role.CITY_SUPERVISOR)}"}
    params = {"alert_id": args.alert_id} if args.alert_id else {}
    with _client(args.url) as client:
        board = _check(client.get("/compliance/board", params=params, headers=reader))
    if board["hour_start"] is None:
        print("no hour judged yet (the compliance pass runs every few minutes)")
        return
    hour = datetime.fromisoformat(board["hour_start"]).astimezone(
        ZoneInfo(KernelSettings().timezone)
    )
    flag = "（进行中，暂定）" if board["provisional"] else ""
    print(f"{hour:%Y-%m-%d %H:00} {flag}")
    for name in STATUSES:
        print(f"  {name:<10} {board['totals'].get(name, 0):>5}")


def main(argv: list[str] | None = None) -> None:
    port = os.environ.get("ECOWATT_HTTP_PORT", "8000")
    parser = argparse.ArgumentParser(
        prog="python -m ecowatt_control_plan.cli", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--url", default=f"http://127.0.0.1:{port}/api/control-plan")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("launch", help="propose and approve an alert order")
    p.add_argument("--level", choices=("yellow", "orange", "red"), default="orange")
    p.add_argument("--origin", choices=("city", "regional"), default="city")
    p.add_argument(
        "--in", dest="in_minutes", type=int, default=0, help="minutes until it takes effect"
    )
    p.add_argument("--hours", type=float, default=8.0, help="expected duration")
    p.add_argument("--ramp", type=int, default=None, help="wind-down minutes (default: the list's)")
    p.add_argument("--districts", default="", help="comma-separated GB/T 2260 codes")
    p.add_argument("--name", default=None)
    p.set_defaults(run=launch)
    p = sub.add_parser("lift", help="propose and approve lifting an order now")
    p.add_argument("alert_id")
    p.add_argument("--reason", default="空气质量好转，解除预警")
    p.set_defaults(run=lift)
    p = sub.add_parser("status", help="enterprise statuses of the latest judged hour")
    p.add_argument("--alert-id", default=None)
    p.set_defaults(run=status)
    args = parser.parse_args(argv)
    args.run(args)


if __name__ == "__main__":
    main()
