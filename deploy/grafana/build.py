# ruff: noqa: E501 - PromQL queries stay on one line each, as they read in Grafana
"""Grafana dashboards as code: `python deploy/grafana/build.py` writes dashboards/*.json.

    python deploy/grafana/build.py          # write the JSON files
    python deploy/grafana/build.py --check  # fail when a file differs from what this builds

Panels are declared below as (title, unit, queries); the layout, datasource and ids follow.
Every metric a query names must be exported by a service or by an exporter of the compose
file and the chart: tests/deploy/test_metric_references.py checks both.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}

Query = tuple[str, str]  # (PromQL, legend)
Panel = tuple[str, str, list[Query]]  # (title, unit, queries)


def q(expr: str, legend: str = "") -> Query:
    return expr, legend


OVERVIEW: list[tuple[str, list[Panel]]] = [
    (
        "设备 Devices",
        [
            (
                "设备连接 Device connections",
                "short",
                [
                    q("sum(ecowatt_ingest_connections)", "TCP connections"),
                    q("sum(ecowatt_ingest_sessions)", "sessions (MN bound)"),
                ],
            ),
            (
                "帧速率（按判定） Frames by verdict",
                "reqps",
                [
                    q("sum by (verdict) (rate(ecowatt_ingest_frames_total[5m]))", "{{verdict}}"),
                ],
            ),
            (
                "应答延迟 Ack latency (frame → 9014)",
                "s",
                [
                    q(
                        "histogram_quantile(0.5, sum by (le) (rate(ecowatt_ingest_ack_seconds_bucket[5m])))",
                        "p50",
                    ),
                    q(
                        "histogram_quantile(0.99, sum by (le) (rate(ecowatt_ingest_ack_seconds_bucket[5m])))",
                        "p99",
                    ),
                ],
            ),
            (
                "反压 Ingest backpressure",
                "percentunit",
                [
                    q(
                        "sum(rate(ecowatt_ingest_backpressure_seconds_total[5m]))",
                        "share of time paused",
                    ),
                    q("sum(ecowatt_ingest_publish_pending_messages)", "pending messages"),
                ],
            ),
        ],
    ),
    (
        "流水线 Pipeline",
        [
            (
                "消费延迟（按组） Consumer lag per group",
                "short",
                [
                    q("sum by (group, topic) (ecowatt_bus_consumer_lag)", "{{group}} / {{topic}}"),
                ],
            ),
            (
                "数据到报警 Frame → alarm latency",
                "s",
                [
                    q(
                        'histogram_quantile(0.5, sum by (le) (rate(ecowatt_alarm_detection_seconds_bucket{rule!="OFFLINE"}[15m])))',
                        "p50",
                    ),
                    q(
                        'histogram_quantile(0.95, sum by (le) (rate(ecowatt_alarm_detection_seconds_bucket{rule!="OFFLINE"}[15m])))',
                        "p95",
                    ),
                ],
            ),
            (
                "死信（每小时） Dead letters per hour",
                "short",
                [
                    q(
                        "sum by (topic, group) (increase(ecowatt_bus_dead_lettered_total[1h]))",
                        "{{topic}} ({{group}})",
                    ),
                ],
            ),
            (
                "消息吞吐 Messages published / consumed",
                "ops",
                [
                    q(
                        "sum by (topic) (rate(ecowatt_bus_published_total[5m]))",
                        "published {{topic}}",
                    ),
                    q(
                        "sum by (group) (rate(ecowatt_bus_consumed_total[5m]))",
                        "consumed {{group}}",
                    ),
                ],
            ),
            (
                "重试 Handler retries",
                "ops",
                [
                    q(
                        "sum by (group, kind) (rate(ecowatt_bus_retries_total[5m]))",
                        "{{group}} {{kind}}",
                    ),
                ],
            ),
            (
                "批处理耗时 Handler time p95",
                "s",
                [
                    q(
                        "histogram_quantile(0.95, sum by (group, le) (rate(ecowatt_bus_handler_seconds_bucket[5m])))",
                        "{{group}}",
                    ),
                ],
            ),
        ],
    ),
    (
        "服务 Services",
        [
            (
                "服务在线 Targets up",
                "short",
                [q('sum by (service) (up{job="ecowatt"})', "{{service}}")],
            ),
            (
                "Outbox 发布 Outbox published",
                "ops",
                [
                    q("sum by (outbox) (rate(ecowatt_outbox_published_total[5m]))", "{{outbox}}"),
                ],
            ),
        ],
    ),
]

HTTP: list[tuple[str, list[Panel]]] = [
    (
        "HTTP",
        [
            (
                "请求速率 Requests per service",
                "reqps",
                [
                    q("sum by (service) (rate(ecowatt_http_requests_total[5m]))", "{{service}}"),
                ],
            ),
            (
                "错误率 5xx share per service",
                "percentunit",
                [
                    q(
                        'sum by (service) (rate(ecowatt_http_requests_total{status=~"5.."}[5m])) / sum by (service) (rate(ecowatt_http_requests_total[5m]))',
                        "{{service}}",
                    ),
                ],
            ),
            (
                "客户端错误 4xx per service",
                "reqps",
                [
                    q(
                        'sum by (service, status) (rate(ecowatt_http_requests_total{status=~"4.."}[5m]))',
                        "{{service}} {{status}}",
                    ),
                ],
            ),
            (
                "延迟 p95 per service",
                "s",
                [
                    q(
                        "histogram_quantile(0.95, sum by (service, le) (rate(ecowatt_http_request_seconds_bucket[5m])))",
                        "{{service}}",
                    ),
                ],
            ),
            (
                "最慢路由 Slowest routes p95",
                "s",
                [
                    q(
                        "topk(10, histogram_quantile(0.95, sum by (service, route, le) (rate(ecowatt_http_request_seconds_bucket[5m]))))",
                        "{{service}} {{route}}",
                    ),
                ],
            ),
        ],
    ),
]

STORAGE: list[tuple[str, list[Panel]]] = [
    (
        "PostgreSQL",
        [
            ("PostgreSQL 在线 up", "short", [q("pg_up", "{{instance}}")]),
            (
                "连接数 Connections",
                "short",
                [q("sum by (datname) (pg_stat_database_numbackends)", "{{datname}}")],
            ),
            ("数据库大小 Database size", "bytes", [q("pg_database_size_bytes", "{{datname}}")]),
            (
                "事务 Commits / rollbacks",
                "ops",
                [
                    q("sum(rate(pg_stat_database_xact_commit[5m]))", "commits"),
                    q("sum(rate(pg_stat_database_xact_rollback[5m]))", "rollbacks"),
                ],
            ),
        ],
    ),
    (
        "Redis",
        [
            ("Redis 在线 up", "short", [q("redis_up", "{{instance}}")]),
            ("内存 Memory used", "bytes", [q("redis_memory_used_bytes", "{{instance}}")]),
            ("客户端 Connected clients", "short", [q("redis_connected_clients", "{{instance}}")]),
            (
                "命令 Commands",
                "ops",
                [q("rate(redis_commands_processed_total[5m])", "{{instance}}")],
            ),
        ],
    ),
    (
        "Kafka",
        [
            ("Broker 数 Brokers", "short", [q("kafka_brokers", "brokers")]),
            (
                "消费组延迟 Consumer group lag (broker view)",
                "short",
                [
                    q(
                        "sum by (consumergroup, topic) (kafka_consumergroup_lag)",
                        "{{consumergroup}} / {{topic}}",
                    ),
                ],
            ),
            (
                "发布确认 Publish latency p99",
                "s",
                [
                    q(
                        "histogram_quantile(0.99, sum by (topic, le) (rate(ecowatt_bus_publish_seconds_bucket[5m])))",
                        "{{topic}}",
                    ),
                ],
            ),
        ],
    ),
]

DASHBOARDS = {
    "ecowatt-overview": ("EcoWatt 平台总览 Platform overview", OVERVIEW),
    "ecowatt-http": ("EcoWatt HTTP 服务 Services", HTTP),
    "ecowatt-storage": ("EcoWatt 存储与消息 PostgreSQL, Redis, Kafka", STORAGE),
}


def dashboard(uid: str, title: str, rows: list[tuple[str, list[Panel]]]) -> dict[str, Any]:
    panels: list[dict[str, Any]] = []
    y = 0
    next_id = 1
    for row_title, row_panels in rows:
        panels.append(
            {
                "type": "row",
                "title": row_title,
                "id": next_id,
                "collapsed": False,
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
                "panels": [],
            }
        )
        next_id += 1
        y += 1
        for i, (title, unit, queries) in enumerate(row_panels):
            panels.append(
                {
                    "type": "timeseries",
                    "title": title,
                    "id": next_id,
                    "datasource": DATASOURCE,
                    "gridPos": {"h": 8, "w": 12, "x": 12 * (i % 2), "y": y + 8 * (i // 2)},
                    "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
                    "options": {"legend": {"displayMode": "list", "placement": "bottom"}},
                    "targets": [
                        {
                            "refId": chr(65 + n),
                            "datasource": DATASOURCE,
                            "expr": expr,
                            "legendFormat": legend,
                        }
                        for n, (expr, legend) in enumerate(queries)
                    ],
                }
            )
            next_id += 1
        y += 8 * ((len(row_panels) + 1) // 2)
    return {
        "uid": uid,
        "title": title,
        "tags": ["ecowatt"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Prometheus",
                    "type": "datasource",
                    "query": "prometheus",
                    "current": {},
                    "hide": 0,
                }
            ]
        },
        "annotations": {"list": []},
        "panels": panels,
    }


def render() -> dict[Path, str]:
    return {
        HERE / "dashboards" / f"{uid}.json": json.dumps(
            dashboard(uid, title, rows), ensure_ascii=False, indent=2
        )
        + "\n"
        for uid, (title, rows) in DASHBOARDS.items()
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    stale = []
    for path, text in render().items():
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(path.name)
        else:
            path.write_text(text)
    if stale:
        print(
            f"out of date: {', '.join(stale)}; run python deploy/grafana/build.py", file=sys.stderr
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
