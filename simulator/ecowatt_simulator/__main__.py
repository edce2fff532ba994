"""`python -m ecowatt_simulator` / `ecowatt-simulator`: simulated HJ 212 devices.

    ecowatt-simulator --target 127.0.0.1:9212 --synthetic-devices 100 --city-seed 7 \\
        --speed 60 --duration 2h --fault control_off=0.05 --fault garbage=0.02 \\
        --log sent.jsonl --ground-truth faults.json

    ecowatt-simulator --target 127.0.0.1:9212 --registry-from-kafka 127.0.0.1:9092 \\
        --city-seed 7 --fast --duration 1d --shard 0/4

    ecowatt-simulator --target 127.0.0.1:9212 --synthetic-devices 20000 --idle \\
        --shard 0/4 --connect-rate 2000 --duration 600

Prints a JSON summary on stdout when it ends (after `--duration`, or on SIGINT/SIGTERM).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import resource
import signal
import sys
import time
from datetime import UTC, datetime
from typing import Any

from ecowatt_kernel.bus import KafkaBus, KafkaConnection

from ecowatt_simulator.device import DeviceSettings
from ecowatt_simulator.faults import FaultConfig, FaultKind
from ecowatt_simulator.fleet import Fleet
from ecowatt_simulator.log import SentLog
from ecowatt_simulator.registry import fleet_from_bus, publish_fleet
from ecowatt_simulator.simulator import Simulator
from ecowatt_simulator.timebase import SimClock, parse_duration

_logger = logging.getLogger("ecowatt.simulator")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ecowatt-simulator",
        description="Simulated HJ 212 data loggers (EcoWatt default electricity profile).",
    )
    parser.add_argument("--target", default="127.0.0.1:9212", help="HOST:PORT of the ingest")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--registry-from-kafka", metavar="BOOTSTRAP", help="read the fleet from registry.changes"
    )
    source.add_argument(
        "--synthetic-devices", type=int, metavar="N", help="invent N devices (no registry)"
    )
    parser.add_argument("--registry-topic", default="registry.changes")
    parser.add_argument(
        "--circuits", default="4", help="circuits per synthetic device: N or MIN-MAX (default 4)"
    )
    parser.add_argument("--city-seed", type=int, required=True, help="seed of device PWs")
    parser.add_argument("--seed", type=int, help="seed of load curves and faults (default: city)")
    parser.add_argument(
        "--password",
        help="one PW for every device (synthetic: registers with one hash; from Kafka: the "
        "PW the fleet was registered with)",
    )
    pace = parser.add_mutually_exclusive_group()
    pace.add_argument("--speed", type=float, default=1.0, help="simulated seconds per second")
    pace.add_argument("--fast", action="store_true", help="as fast as the server answers")
    parser.add_argument("--start", default="now", help="simulated start: ISO time or 'now'")
    parser.add_argument(
        "--duration", help="simulated time to run (90s, 30m, 2h, 1d); idle: wall time"
    )
    parser.add_argument("--rtd-interval", type=int, help="real-time interval, seconds")
    parser.add_argument("--minute-interval", type=int, default=10, help="2051 interval, min")
    parser.add_argument("--sample-s", type=int, default=15, help="meter sampling step")
    parser.add_argument("--no-minute", action="store_true", help="do not send 2051")
    parser.add_argument("--no-hour", action="store_true", help="do not send 2061")
    parser.add_argument("--no-day", action="store_true", help="do not send 2031")
    parser.add_argument("--window", type=int, default=8, help="uploads in flight per device")
    parser.add_argument("--ack-timeout", type=float, default=10.0, help="wall seconds")
    parser.add_argument("--recount", type=int, default=3)
    parser.add_argument("--drain-timeout", type=float, default=60.0, help="wall seconds")
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="KIND=SHARE",
        help=f"share of devices with a fault; kinds: {', '.join(k.value for k in FaultKind)}",
    )
    parser.add_argument("--shard", default="0/1", help="i/n: simulate devices i, i+n, …")
    parser.add_argument("--idle", action="store_true", help="connect and hold; send one frame")
    parser.add_argument("--connect-rate", type=float, help="new connections per second")
    parser.add_argument(
        "--register-to-kafka",
        metavar="BOOTSTRAP",
        help="publish the synthetic fleet to the registry topic first (shard 0 only)",
    )
    parser.add_argument("--register-only", action="store_true", help="register, then exit")
    parser.add_argument("--log", metavar="FILE", help="write the sent log (JSON lines)")
    parser.add_argument("--ground-truth", metavar="FILE", help="write the fault ground truth")
    parser.add_argument(
        "--counts-only", action="store_true", help="keep counts, not QNs (big load tests)"
    )
    parser.add_argument("--stats-every", type=float, default=0.0, help="stats to stderr, s")
    parser.add_argument("--log-level", default="WARNING")
    return parser


def _raise_fd_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
    return soft


def _circuits(text: str) -> int | tuple[int, int]:
    if "-" in text:
        low, high = text.split("-", 1)
        return int(low), int(high)
    return int(text)


def _start(text: str) -> float | None:
    if text == "now":
        return None
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    host, _, port = args.target.rpartition(":")
    index, _, count = args.shard.partition("/")
    shard = (int(index), int(count or 1))
    if args.synthetic_devices is not None:
        fleet = Fleet.synthetic(
            args.synthetic_devices,
            circuits=_circuits(args.circuits),
            seed=args.seed if args.seed is not None else args.city_seed,
            city_seed=args.city_seed,
            password=args.password,
            rtd_interval_s=args.rtd_interval or 60,
        )
        if args.register_to_kafka and (shard[0] == 0 or args.register_only):
            bus = KafkaBus(KafkaConnection(bootstrap_servers=args.register_to_kafka))
            await bus.start()
            try:
                published = await publish_fleet(bus, fleet, topic=args.registry_topic)
            finally:
                await bus.stop()
            print(json.dumps({"registered": published}), file=sys.stderr, flush=True)
        if args.register_only:
            return {"registered_devices": len(fleet)}
    else:
        bus = KafkaBus(KafkaConnection(bootstrap_servers=args.registry_from_kafka))
        await bus.start()
        try:
            fleet = await fleet_from_bus(
                bus,
                city_seed=args.city_seed,
                topic=args.registry_topic,
                seed=args.seed,
                password=args.password,
            )
        finally:
            await bus.stop()
    if shard != (0, 1):
        fleet = fleet.shard(*shard)
    settings = DeviceSettings(
        rtd_interval_s=args.rtd_interval,
        minute_interval_min=args.minute_interval,
        sample_s=args.sample_s,
        minute_data=not args.no_minute,
        hour_data=not args.no_hour,
        day_data=not args.no_day,
        ack_timeout_s=args.ack_timeout,
        recount=args.recount,
        window=args.window,
        idle=args.idle,
    )
    clock = SimClock(_start(args.start), speed=math.inf if args.fast else args.speed)
    sim = Simulator(
        fleet,
        host=host or "127.0.0.1",
        port=int(port),
        faults=FaultConfig.parse(args.fault),
        clock=clock,
        settings=settings,
        seed=args.seed,
        log=SentLog(keep_qns=not args.counts_only),
        connect_rate=args.connect_rate,
    )
    started = time.monotonic()
    reporter = None
    if args.stats_every > 0:
        reporter = asyncio.create_task(_report(sim, args.stats_every, started))
    task = asyncio.create_task(
        sim.run(
            parse_duration(args.duration) if args.duration else None,
            drain_timeout=args.drain_timeout,
        )
    )
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    answered = False
    with contextlib.suppress(asyncio.CancelledError):
        answered = await task
    if reporter is not None:
        reporter.cancel()
    wall = time.monotonic() - started
    if args.log:
        sim.log.write(args.log)
    if args.ground_truth:
        sim.ground_truth.write(args.ground_truth)
    summary = sim.log.summary()
    summary.update(
        shard=args.shard,
        wall_s=round(wall, 3),
        frames_per_s=round(summary["frames"] / wall, 1) if wall > 0 else None,
        all_answered=answered,
        fault_devices=len(sim.plan.assignments()),
    )
    return summary


async def _report(sim: Simulator, every: float, started: float) -> None:
    while True:
        await asyncio.sleep(every)
        stats = sim.stats()
        stats["wall_s"] = round(time.monotonic() - started, 1)
        stats.pop("by_cn", None)
        print(json.dumps(stats), file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr)
    limit = _raise_fd_limit()
    if args.idle and args.synthetic_devices and args.synthetic_devices > limit:
        _logger.warning(
            "fd limit %d: use --shard to spread %d devices", limit, args.synthetic_devices
        )
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        summary = asyncio.run(run(args))
    else:
        summary = uvloop.run(run(args))
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
