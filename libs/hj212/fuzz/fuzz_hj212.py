"""Fuzz the HJ 212 codec: no input may raise anything outside ``HJ212Error``.

Each input goes through the decoder (as bytes and as text), the stream framer (cut in two
at an input-derived point; every byte must come out exactly once), re-encoding of what was
decoded (an accepted encoding must decode back to the same message), the answer builders,
the reassembler and the default profile.

    python libs/hj212/fuzz/fuzz_hj212.py --runs 1000000          # atheris when installed
    python libs/hj212/fuzz/fuzz_hj212.py --runs 20000 --engine random

The ``random`` engine is a seeded mutation fuzzer (seeds: the repository's sample frames plus
frames built here), used when atheris is unavailable and by the test suite's short run.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import random
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import ecowatt_hj212 as hj212
from ecowatt_hj212 import commands

_PROFILE = hj212.get_profile()
TOKENS = (
    b"##",
    b"CP=&&",
    b"&&",
    b"QN=",
    b"ST=",
    b"CN=",
    b"PW=",
    b"MN=",
    b"Flag=",
    b"PNUM=",
    b"PNO=",
    b"DataTime=",
    b"-Rtd=",
    b"-Flag=",
    b"-Cou=",
    b"//",
    b"\r\n",
    b"\\r\\n",
    b"\r\r\n",
    b";",
    b",",
    b"=",
    b"-",
    b"0101",
    b"9999",
    b"1C80",
    "中文".encode(),
    "中文".encode("gb18030"),
    b"\xff\xfe",
)


def exercise(data: bytes) -> None:
    """Run every entry point on ``data``; raise only on a bug (non-tree error or invariant)."""
    frame: hj212.Frame | None
    try:
        frame = hj212.decode(data)
    except hj212.DecodeError as error:
        frame = error.frame
    with contextlib.suppress(hj212.HJ212Error):
        hj212.decode(data.decode("latin-1"), strict=True)

    framer = hj212.StreamFramer(max_segment_size=64 + (data[0] if data else 0) * 8)
    cut = (data[-1] % (len(data) + 1)) if data else 0
    events = framer.feed(data[:cut])
    if framer.mid_frame and not framer.buffered:
        raise AssertionError("mid_frame with nothing held")
    events += framer.feed(data[cut:]) + framer.flush()
    if b"".join(event.data for event in events) != data or framer.buffered:
        raise AssertionError("framer lost or duplicated bytes")
    if framer.mid_frame:
        raise AssertionError("mid_frame after a flush")
    for event in events:
        if isinstance(event, hj212.RawFrame):
            with contextlib.suppress(hj212.HJ212Error):
                hj212.decode(event.data)

    if frame is None:
        return
    _ = frame.verification.length.explanation, frame.verification.crc.explanation
    _PROFILE.readings(frame.codes)
    message = frame.to_message()
    try:
        encoded = hj212.encode(message)
    except hj212.EncodeError:
        encoded = None
    if encoded is not None:
        again = hj212.decode(encoded)
        if again.to_message() != message or not again.ok:
            raise AssertionError(f"encode/decode round trip changed {message!r}")
    for build in (commands.data_answer, commands.notification_answer):
        with contextlib.suppress(hj212.EncodeError):
            hj212.encode(build(frame))
    with contextlib.suppress(hj212.ReassemblyError):
        hj212.Reassembler().add(frame)


def seeds() -> list[bytes]:
    """The repository's sample frames (tests/data, when present) and frames built here."""
    found: list[bytes] = []
    samples = Path(__file__).resolve().parents[3] / "tests" / "data" / "hj212-frames.jsonl"
    if samples.exists():
        for line in samples.read_text(encoding="utf-8").splitlines():
            if line.strip():
                found.append(json.loads(line)["frame"].encode("utf-8"))
    device = commands.Device(mn="EW0000000000000000000001", pw="123456")
    realtime = hj212.Message(
        cn="2011",
        qn="20250601084500000",
        st="31",
        pw="123456",
        mn=device.mn,
        flag=5,
        cp=(
            ("DataTime", "20250601084500"),
            ("xe0101-Rtd", "12.5"),
            ("xe0101-Flag", "N"),
            ("i11001-Info", "//设备运行, 正常//"),
        ),
    )
    found.append(hj212.encode(realtime))
    found.extend(hj212.encode_split(realtime, max_segment_size=180))
    found.append(
        hj212.encode(
            commands.set_time(device, datetime(2025, 1, 2, 3, 4, 5), qn="20250101000000000")
        )
    )
    return found


def mutate(rng: random.Random, pool: list[bytes]) -> bytes:
    """One random mutation (or a few) of a pool entry."""
    data = bytearray(rng.choice(pool))
    for _ in range(rng.randint(1, 4)):
        choice = rng.randrange(8)
        position = rng.randint(0, len(data))
        if choice == 0 and data:
            data[rng.randrange(len(data))] = rng.randrange(256)
        elif choice == 1:
            data[position:position] = rng.choice(TOKENS)
        elif choice == 2 and data:
            end = min(len(data), position + rng.randint(1, 16))
            del data[position:end]
        elif choice == 3 and data:
            end = min(len(data), position + rng.randint(1, 64))
            data[position:position] = data[position:end]
        elif choice == 4:
            other = rng.choice(pool)
            data[position:] = other[rng.randint(0, len(other)) :]
        elif choice == 5 and data:
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        elif choice == 6:
            data[position:position] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        else:
            data += rng.choice(pool)
    return bytes(data)


def run_random(runs: int, *, seed: int = 212, report: Callable[[str], None] = print) -> int:
    """Seeded mutation fuzzing for ``runs`` inputs; return the number run."""
    rng = random.Random(seed)
    pool = seeds()
    started = time.perf_counter()
    for count in range(1, runs + 1):
        data = mutate(rng, pool)
        try:
            exercise(data)
        except hj212.HJ212Error:
            raise
        except Exception as error:
            raise AssertionError(f"input {data!r} raised {error!r}") from error
        if count % 97 == 0 and len(pool) < 4000:
            pool.append(data)
        if count % 100_000 == 0:
            report(f"{count} inputs, {time.perf_counter() - started:.0f} s")
    return runs


def run_atheris(runs: int, atheris: Any) -> None:
    """Coverage-guided fuzzing with atheris (libFuzzer) for ``runs`` inputs."""
    corpus = tempfile.mkdtemp(prefix="hj212-fuzz-")
    for index, data in enumerate(seeds()):
        Path(corpus, f"seed-{index:03d}").write_bytes(data)
    dictionary = Path(corpus, "..", "hj212.dict").resolve()
    dictionary.write_text(
        "".join('"' + "".join(f"\\x{b:02x}" for b in token) + '"\n' for token in TOKENS)
    )

    def one_input(data: bytes) -> None:
        exercise(data)

    atheris.Setup(
        [sys.argv[0], f"-runs={runs}", f"-dict={dictionary}", "-max_len=2048", corpus],
        one_input,
    )
    atheris.Fuzz()


def _instrument_codec(atheris: Any) -> None:
    """Re-import the codec with coverage instrumentation (only the codec: stdlib stays fast)."""
    global hj212, commands, _PROFILE
    for name in [n for n in sys.modules if n.startswith("ecowatt_hj212")]:
        del sys.modules[name]
    with atheris.instrument_imports(include=["ecowatt_hj212"]):
        hj212 = importlib.import_module("ecowatt_hj212")
        commands = importlib.import_module("ecowatt_hj212.commands")
    _PROFILE = hj212.get_profile()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--engine", choices=("auto", "atheris", "random"), default="auto")
    parser.add_argument("--seed", type=int, default=212)
    args = parser.parse_args()
    atheris = None
    if args.engine != "random":
        try:
            atheris = importlib.import_module("atheris")
        except ImportError:
            if args.engine == "atheris":
                raise
    started = time.perf_counter()
    if atheris is not None:
        print(f"engine atheris, {args.runs} runs", flush=True)
        _instrument_codec(atheris)
        run_atheris(args.runs, atheris)  # libFuzzer exits the process itself
        return 0
    print(f"engine random (seed {args.seed}), {args.runs} runs", flush=True)
    run_random(args.runs, seed=args.seed)
    print(f"done: {args.runs} inputs in {time.perf_counter() - started:.1f} s, no failure")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
