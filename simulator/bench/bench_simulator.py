"""Benchmark of the device simulator (`make bench-simulator`).

1. Frames/s one simulator process generates in fast mode against an acknowledging sink
   (`hj212_sink.py`, its own process): every upload is answered with 9014 before the device's
   window of unanswered uploads lets more through, so this is the rate with the full ack
   flow. Measured with 15 s (default) and 60 s meter sampling.
2. Connections per process: idle mode (connect, one hello upload, hold) with N devices;
   memory per held connection from the process's RSS at two sizes.

    python simulator/bench/bench_simulator.py [--devices 200] [--connections 5000]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class Sink:
    def __init__(self) -> None:
        self.port = _free_port()
        self.process = subprocess.Popen(  # noqa: S603
            [sys.executable, str(HERE / "hj212_sink.py"), "--port", str(self.port)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        self.process.stdout.readline()  # {"listening": port}

    def stop(self) -> dict[str, object]:
        self.process.send_signal(2)
        out, _ = self.process.communicate(timeout=30)
        return json.loads(out.strip().splitlines()[-1])


def simulator(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(  # noqa: S603
        [sys.executable, "-m", "ecowatt_simulator", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def throughput(devices: int, sample_s: int, duration: str) -> dict[str, object]:
    sink = Sink()
    try:
        proc = simulator(
            "--target", f"127.0.0.1:{sink.port}",
            "--synthetic-devices", str(devices), "--circuits", "4", "--city-seed", "1",
            "--fast", "--start", "2025-12-01T00:00:00+08:00", "--duration", duration,
            "--sample-s", str(sample_s), "--window", "16", "--counts-only",
        )  # fmt: skip
        out, err = proc.communicate(timeout=1800)
        assert proc.returncode == 0, err[-2000:]
        summary = json.loads(out.strip().splitlines()[-1])
    finally:
        sink_stats = sink.stop()
    return {
        "devices": devices,
        "sample_s": sample_s,
        "simulated": duration,
        "frames": summary["frames"],
        "bytes": summary["bytes"],
        "wall_s": summary["wall_s"],
        "frames_per_s": summary["frames_per_s"],
        "all_answered": summary["all_answered"],
        "sink_frames": sink_stats["frames"],
    }


def idle(connections: int, hold_s: float) -> dict[str, object]:
    sink = Sink()
    try:
        proc = simulator(
            "--target", f"127.0.0.1:{sink.port}",
            "--synthetic-devices", str(connections), "--circuits", "1", "--city-seed", "1",
            "--idle", "--duration", str(hold_s), "--connect-rate", "2000",
            "--counts-only",
        )  # fmt: skip
        peak = 0
        started = time.monotonic()
        while proc.poll() is None:
            peak = max(peak, _rss_kib(proc.pid))
            time.sleep(0.2)
        out, err = proc.communicate()
        assert proc.returncode == 0, err[-2000:]
        summary = json.loads(out.strip().splitlines()[-1])
        wall = time.monotonic() - started
    finally:
        sink_stats = sink.stop()
    return {
        "connections": connections,
        "connected": summary["connects"],
        "hello_frames": summary["frames"],
        "peak_rss_kib": peak,
        "wall_s": round(wall, 1),
        "sink_connections": sink_stats["connections"],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--devices", type=int, default=200)
    parser.add_argument("--duration", default="6h")
    parser.add_argument("--connections", type=int, default=5000)
    parser.add_argument("--hold", type=float, default=8.0)
    args = parser.parse_args()
    print(
        json.dumps(
            {
                "machine": f"{os.cpu_count()} cores, {platform.python_implementation()} "
                f"{platform.python_version()}",
                "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            }
        )
    )
    for sample_s in (15, 60):
        print(json.dumps(throughput(args.devices, sample_s, args.duration)), flush=True)
    small = idle(100, args.hold)
    big = idle(args.connections, args.hold)
    per_conn = (big["peak_rss_kib"] - small["peak_rss_kib"]) / (  # type: ignore[operator]
        args.connections - 100
    )
    print(json.dumps(small), flush=True)
    print(json.dumps(big), flush=True)
    print(json.dumps({"rss_per_connection_kib": round(per_conn, 2)}), flush=True)


if __name__ == "__main__":
    main()
