"""Issue 19: the same simulated day played three ways through the whole pipeline gives the
same alarms (rule, subject, start within a minute), each with strict precision and recall
≥ 0.95 and tolerated extras bounded:

1. in order and paced (`pipeline_run`, shared with the other pipeline tests);
2. unpaced — twenty simulated minutes at a time, as fast as ingest answers — with every
   enterprise's second logger held back until the others have sent their step (its
   enterprise's data arrive minutes out of step, the logger reconnecting each time);
3. paced, with a three-hour network outage of every logger followed by back-fill: the
   loggers keep their data and send them, oldest first, when the link is back.

The alarms raised on silence during the outage (device offline) are retracted with their
reason once the back-fill shows the data; what the outage hid is found as late findings."""

from __future__ import annotations

from datetime import datetime, time, timedelta

import pytest
from conftest import play
from pipeline_harness import TZ, PipelineRun
from pipeline_truth import expected_alarms, score
from test_alarm import check_scores, describe

pytestmark = [pytest.mark.integration, pytest.mark.timeout(3600)]


def alarm_set(run: PipelineRun) -> list[tuple[str, str, datetime]]:
    day_end = run.day_end
    return sorted(
        (a["rule_code"], a["subject_id"], a["first_at"])
        for a in run.alarms
        if a["first_at"] < day_end
    )


def differences(
    a: list[tuple[str, str, datetime]], b: list[tuple[str, str, datetime]]
) -> tuple[list[tuple[str, str, datetime]], list[tuple[str, str, datetime]]]:
    """(in a only, in b only), matching rule and subject with starts within a minute."""
    rest = list(b)
    only_a = []
    for rule, subject, start in a:
        hit = next(
            (
                x
                for x in rest
                if x[:2] == (rule, subject) and abs((x[2] - start).total_seconds()) <= 60
            ),
            None,
        )
        if hit is None:
            only_a.append((rule, subject, start))
        else:
            rest.remove(hit)
    return only_a, rest


async def test_the_same_day_gives_the_same_alarms_however_its_data_arrive(
    pipeline_run: PipelineRun, kafka_bootstrap: str, redis_url: str, database_url: str
) -> None:
    paced = alarm_set(pipeline_run)
    # The reference the other two ways are compared with: every alarm the truth requires.
    required = score(pipeline_run, expected_alarms(pipeline_run, pipeline_run.filings))
    assert required["missing"] == [] and len(paced) >= required["expected"], required["missing"]
    skewed = {mn for mn in pipeline_run.fleet.devices if mn[9] == "F"}  # second loggers
    assert len(skewed) >= 5
    unpaced = await play(kafka_bootstrap, redis_url, database_url, "unpaced", skewed=skewed)
    check_scores(unpaced)
    assert differences(paced, alarm_set(unpaced)) == ([], []), "unpaced and skewed"

    day = pipeline_run.options.day
    start = datetime.combine(day, time(9, 0), TZ)
    outage = await play(
        kafka_bootstrap,
        redis_url,
        database_url,
        "outage",
        outage=(start, start + timedelta(hours=3)),
    )
    check_scores(outage)
    assert differences(paced, alarm_set(outage)) == ([], []), "after an outage and back-fill"
    offline = {a["subject_id"] for a in outage.retracted if a["rule_code"] == "OFFLINE"}
    assert offline == set(outage.fleet.devices), "every logger's OFFLINE withdrawn"
    assert all("撤回" in a["retraction"]["reason"] for a in outage.retracted)
    hidden = [
        a
        for a in outage.alarms
        if start <= a["first_at"] < start + timedelta(hours=3) and a["rule_code"] != "R4"
    ]
    assert all(a["late"] and a["discovered_at"] > a["first_at"] for a in hidden), describe(hidden)
    assert outage.counts["alarm_replays"] > 0
