"""Alert rules (promtool check and unit tests), dashboards (built from code, up to date) and
runbooks (one per alert, with the tender's fault level and times)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import yaml

from tests.deploy.conftest import DEPLOY, ROOT, deploy_tool

RULES = DEPLOY / "prometheus" / "rules" / "ecowatt.rules.yml"
# The tender's four fault levels: severity, response, restoration.
LEVELS = {
    "非常严重": ("critical", "immediately", "40m"),
    "严重": ("high", "30m", "24h"),
    "中等": ("medium", "30m", "12h"),
    "一般": ("low", "30m", "6h"),
}


def alerts() -> list[dict[str, object]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(deploy_tool("promtool")), *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=RULES.parent,
        check=False,
    )


def test_rules_are_valid() -> None:
    done = promtool("check", "rules", RULES.name)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(alerts())} rules found" in done.stdout


def test_rule_unit_tests_pass_and_cover_every_alert() -> None:
    done = promtool("test", "rules", "ecowatt.rules.test.yml")
    assert done.returncode == 0, done.stdout + done.stderr
    tested = set(
        re.findall(r"alertname: (\w+)", (RULES.parent / "ecowatt.rules.test.yml").read_text())
    )
    assert tested == {a["alert"] for a in alerts()}


def test_a_wrong_expectation_fails_the_unit_tests(tmp_path: Path) -> None:
    text = (
        (RULES.parent / "ecowatt.rules.test.yml").read_text().replace("restore: 12h", "restore: 1h")
    )
    (tmp_path / "t.yml").write_text(text.replace("ecowatt.rules.yml", str(RULES)))
    done = subprocess.run(
        [str(deploy_tool("promtool")), "test", "rules", str(tmp_path / "t.yml")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode != 0


def test_every_alert_has_its_level_times_and_runbook() -> None:
    for alert in alerts():
        labels = alert["labels"]
        assert isinstance(labels, dict)
        level = labels["fault_level"]
        assert (labels["severity"], labels["response"], labels["restore"]) == LEVELS[level], alert
        runbook = ROOT / alert["annotations"]["runbook_url"]  # type: ignore[index]
        assert runbook.exists(), runbook
        page = runbook.read_text()
        severity, _, _ = LEVELS[level]
        assert f"| {level} | `{severity}` |" in page, runbook
    index = (ROOT / "docs" / "runbooks" / "README.md").read_text()
    for alert in alerts():
        assert f"| {alert['alert']} | {alert['labels']['fault_level']} |" in index  # type: ignore[index]


def test_dashboards_are_what_their_code_builds() -> None:
    done = subprocess.run(
        [sys.executable, str(DEPLOY / "grafana" / "build.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def test_dashboards_show_what_the_issue_asks() -> None:
    text = " ".join(p.read_text() for p in (DEPLOY / "grafana" / "dashboards").glob("*.json"))
    for metric in (
        "ecowatt_ingest_connections",  # device connections
        "ecowatt_ingest_frames_total",  # frames by verdict
        "ecowatt_ingest_ack_seconds_bucket",  # ack latency
        "ecowatt_bus_consumer_lag",  # consumer lag per group
        "ecowatt_alarm_detection_seconds_bucket",  # frame → alarm
        "ecowatt_bus_dead_lettered_total",  # DLQ counts
        "ecowatt_http_requests_total",  # HTTP rates and errors per service
        "ecowatt_http_request_seconds_bucket",  # HTTP latency
        "pg_up",  # PostgreSQL health
        "redis_up",  # Redis health
    ):
        assert metric in text, metric
