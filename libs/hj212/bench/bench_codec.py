"""Benchmark the HJ 212 codec on one core (``make bench-codec``).

(a) decode + verification of a ~300-byte 2011 real-time frame in the default profile,
(b) the same for a ~900-byte 2051 minute frame, (c) the stream framer's throughput on a
concatenated stream fed in TCP-sized chunks.  ``--profile`` prints where the time goes.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import platform
import pstats
import time
from collections.abc import Callable

import ecowatt_hj212 as hj212


def realtime_frame() -> bytes:
    """2011 upload of one three-phase meter in the default profile (~300 bytes)."""
    profile = hj212.get_profile()
    items: list[tuple[str, str]] = [("DataTime", "20250601084500")]
    readings = [
        ("active_power_kw", None, "41.27"),
        ("energy_total_kwh", None, "182734.5"),
        ("power_factor", None, "0.93"),
        ("current_a", "A", "63.2"),
        ("current_a", "B", "62.8"),
        ("current_a", "C", "64.1"),
        ("voltage_v", "A", "229.8"),
        ("voltage_v", "B", "231.2"),
        ("voltage_v", "C", "230.4"),
    ]
    for quantity, phase, value in readings:
        code = profile.code_for(quantity, 1, phase=phase)
        assert code is not None
        items.append((f"{code}-Rtd", value))
        if quantity in ("active_power_kw", "energy_total_kwh"):
            items.append((f"{code}-Flag", "N"))
    message = hj212.Message(
        cn="2011",
        qn="20250601084500123",
        st="31",
        pw="123456",
        mn="EW0100000000000000000001",
        flag=5,
        cp=tuple(items),
    )
    return hj212.encode(message)


def minute_frame() -> bytes:
    """2051 minute data of two circuits: Avg/Min/Max per quantity, Cou energy (~900 bytes)."""
    items: list[tuple[str, str]] = [("DataTime", "20250601084000")]
    for circuit in (1, 2):
        for quantity in ("01", "11", "12", "13", "21", "22", "23"):
            code = f"xe{quantity}{circuit:02d}"
            items += [
                (f"{code}-Avg", "230.41"),
                (f"{code}-Min", "228.90"),
                (f"{code}-Max", "232.07"),
            ]
        items += [(f"xe02{circuit:02d}-Cou", "6.875"), (f"xe02{circuit:02d}-Flag", "N")]
    message = hj212.Message(
        cn="2051",
        qn="20250601085000456",
        st="31",
        pw="123456",
        mn="EW0100000000000000000001",
        flag=5,
        cp=tuple(items),
    )
    return hj212.encode(message)


def frames_per_second(frame: bytes, *, seconds: float) -> float:
    """Best of five timed batches of decode (which includes verification)."""
    decode = hj212.decode
    assert decode(frame).ok
    batch = 2000
    best = float("inf")
    deadline = time.perf_counter() + seconds
    rounds = 0
    while rounds < 5 or time.perf_counter() < deadline:
        started = time.perf_counter()
        for _ in range(batch):
            decode(frame)
        best = min(best, (time.perf_counter() - started) / batch)
        rounds += 1
    return 1.0 / best


def framer_mb_per_second(stream: bytes, *, chunk: int, seconds: float) -> float:
    """Bytes per second through a fresh framer fed ``chunk``-sized pieces (best of runs)."""
    pieces = [stream[i : i + chunk] for i in range(0, len(stream), chunk)]
    best = float("inf")
    deadline = time.perf_counter() + seconds
    rounds = 0
    while rounds < 3 or time.perf_counter() < deadline:
        framer = hj212.StreamFramer()
        started = time.perf_counter()
        count = 0
        for piece in pieces:
            count += len(framer.feed(piece))
        count += len(framer.flush())
        best = min(best, time.perf_counter() - started)
        rounds += 1
    return len(stream) / best / 1e6


def profile(work: Callable[[], None], limit: int) -> None:
    profiler = cProfile.Profile()
    profiler.enable()
    work()
    profiler.disable()
    pstats.Stats(profiler).sort_stats("tottime").print_stats(limit)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="time per measurement")
    parser.add_argument("--json", action="store_true", help="print results as JSON")
    parser.add_argument("--profile", action="store_true", help="cProfile the decode loops")
    args = parser.parse_args()

    small, large = realtime_frame(), minute_frame()
    stream = (small + large + small) * (4_000_000 // (2 * len(small) + len(large)))
    results = {
        "python": platform.python_version(),
        "realtime_2011_bytes": len(small),
        "realtime_2011_frames_per_s": round(frames_per_second(small, seconds=args.seconds)),
        "minute_2051_bytes": len(large),
        "minute_2051_frames_per_s": round(frames_per_second(large, seconds=args.seconds)),
        "framer_stream_bytes": len(stream),
        "framer_mb_per_s_64k_chunks": round(
            framer_mb_per_second(stream, chunk=65536, seconds=args.seconds), 1
        ),
        "framer_mb_per_s_1460b_chunks": round(
            framer_mb_per_second(stream, chunk=1460, seconds=args.seconds), 1
        ),
    }
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for key, value in results.items():
            print(f"{key:<32} {value}")
    if args.profile:

        def decode_both() -> None:
            for _ in range(20000):
                hj212.decode(small)
                hj212.decode(large)

        profile(decode_both, 15)

        def frame_stream() -> None:
            hj212.StreamFramer().feed(stream)

        profile(frame_stream, 10)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
