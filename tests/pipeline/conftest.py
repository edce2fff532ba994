"""One simulated day through the whole pipeline, shared by the validation and alarm tests,
and the same day played two more ways by `test_arrival.py`.

`pipeline_harness.Pipeline` starts the services (their real start-up, production settings;
only the clock and the city's size differ) and plays the day: 24 enterprises (half of them
with a second logger for their control facilities), 36 loggers, one simulated day plus
30 minutes, real Kafka, PostgreSQL and Redis; `pipeline_truth.py` says what the platform is
expected to conclude. Each run has a database and topics of its own.
"""

from __future__ import annotations

import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from ecowatt_kernel.db import scratch_database
from ecowatt_simulator import FaultConfig

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "support"))

from pipeline_harness import Mode, Pipeline, PipelineOptions, PipelineRun

DAY = date(2026, 11, 18)  # a Wednesday: every shift plan works
SHARES = {
    # control facilities (alarm rules)
    "control_off": 0.15,
    "late_start": 0.1,
    "early_stop": 0.1,
    "low_load": 0.1,
    # meters (data quality)
    "negative_energy": 0.06,
    "meter_reset": 0.06,
    "constant_power": 0.06,
    # loggers and enterprises
    "offline": 0.1,
    "power_cut": 0.06,
    # transport faults ingest absorbs
    "garbage": 0.02,
    "split_packets": 0.02,
}

# Late starts and early stops drawn clear of the rule thresholds (every group allows 5
# minutes): a late start of 17–23 minutes is an R2 alarm of its own — over 10 minutes past
# the allowance, 7 short of R1's 30-minute confirmation; an early stop of 50–65 minutes is an
# R1 alarm with R3 as its facet. The simulator's default (20–60 minutes after the allowance)
# crosses R1's confirmation and put an early stop at 30.25 minutes, an alarm either way.
LATE_START_EXTRA_S = (12 * 60.0, 18 * 60.0)
EARLY_STOP_EXTRA_S = (45 * 60.0, 60 * 60.0)


def options() -> PipelineOptions:
    return PipelineOptions(
        day=DAY,
        enterprises=24,
        seed=5,
        faults=FaultConfig(
            shares=SHARES,
            offline_s=(70 * 60.0, 110 * 60.0),
            late_start_extra_s=LATE_START_EXTRA_S,
            early_stop_extra_s=EARLY_STOP_EXTRA_S,
        ),
    )


def _outage_to_file(pipeline: Pipeline) -> Any:
    """A `control_off` window on the day, of an enterprise with no other fault: its control
    facility is filed for maintenance (15 minutes either side) and the filing approved."""
    sim = pipeline.simulator()
    lo, hi = pipeline.day_start.timestamp(), pipeline.day_end.timestamp()
    assignments = sim.plan.assignments()
    events = sim.plan.events(lo, hi, sim.model)
    sole = {mn for mn, kinds in assignments.items() if kinds == ["control_off"]}
    candidates = [e for e in events if e.kind == "control_off" and e.mn in sole]
    assert len({e.mn for e in candidates}) >= 2, "keep one control_off unfiled"
    return candidates[-1]


async def play(
    kafka_bootstrap: str, redis_url: str, database_url: str, mode: Mode = "paced", **kw: Any
) -> PipelineRun:
    """One run of the simulated day through a fresh pipeline (its own database and topics),
    with the same planned outage filed and approved first."""
    async with (
        scratch_database(database_url) as url,
        Pipeline(
            options(), kafka_bootstrap=kafka_bootstrap, database_url=url, redis_url=redis_url
        ) as pipeline,
    ):
        outage = _outage_to_file(pipeline)
        filing = await pipeline.file_outage(
            outage.enterprise_id,
            [outage.facility_id],
            _utc(outage.start) - timedelta(minutes=15),
            _utc(outage.end) + timedelta(minutes=15),
        )
        run = await pipeline.run(filings=[filing], mode=mode, **kw)
        print(f"\npipeline run ({mode}): {run.timings} {run.counts}")
        return run


@pytest.fixture(scope="package")
async def pipeline_run(kafka_bootstrap: str, redis_url: str, database_url: str) -> PipelineRun:
    """The day in order and paced: what the validation and alarm tests score."""
    return await play(kafka_bootstrap, redis_url, database_url)


def _utc(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)
