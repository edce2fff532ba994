"""EcoWatt device simulator: the synthetic city's HJ 212 data loggers, with fault injection.

    from ecowatt_simulator import Fleet, Simulator, SimClock, FaultConfig

    fleet = Fleet.synthetic(devices=10, circuits=4, seed=7)
    sim = Simulator(fleet, host="127.0.0.1", port=9212, clock=SimClock(speed=60),
                    faults=FaultConfig(shares={"control_off": 0.2}))
    await sim.run(duration="2h")          # two simulated hours, two wall minutes
    sim.log.unacked(), sim.ground_truth

See `simulator/README.md`.
"""

from ecowatt_simulator.device import DeviceSettings, SimDevice
from ecowatt_simulator.faults import FaultConfig, FaultEvent, FaultKind, GroundTruth
from ecowatt_simulator.fleet import DeviceSpec, Fleet, PointSpec
from ecowatt_simulator.load import LoadModel, Sample
from ecowatt_simulator.log import DeviceLog, LatencyHistogram, SentLog
from ecowatt_simulator.orders import Behaviour, HourTruth, OrderBook, OrderConfig
from ecowatt_simulator.registry import fleet_from_bus, publish_fleet
from ecowatt_simulator.simulator import Simulator, run_against_platform
from ecowatt_simulator.timebase import LocalTime, ManualClock, SimClock, parse_duration

__all__ = [
    "Behaviour",
    "DeviceLog",
    "DeviceSettings",
    "DeviceSpec",
    "FaultConfig",
    "FaultEvent",
    "FaultKind",
    "Fleet",
    "GroundTruth",
    "HourTruth",
    "LatencyHistogram",
    "LoadModel",
    "LocalTime",
    "ManualClock",
    "OrderBook",
    "OrderConfig",
    "PointSpec",
    "Sample",
    "SentLog",
    "SimClock",
    "SimDevice",
    "Simulator",
    "fleet_from_bus",
    "parse_duration",
    "publish_fleet",
    "run_against_platform",
]
