"""A fast HJ 212 acknowledging sink for load tests of the device simulator.

It does not decode CP: it cuts frames with the codec's framer, reads QN/PW/MN/Flag with a
regular expression and answers every upload that asks for it with 9014 (1013 with 9013).
Prints counts as JSON when stopped (SIGINT/SIGTERM).

    python simulator/bench/hj212_sink.py --port 19212
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import signal
import time

import ecowatt_hj212 as hj212
from ecowatt_hj212 import hj212_crc

_HEAD = re.compile(rb"QN=(\d+);ST=\w+;CN=(\d{4});PW=([^;]*);MN=([^;]*);Flag=(\d+)")


class Stats:
    def __init__(self) -> None:
        self.frames = 0
        self.acks = 0
        self.bytes = 0
        self.connections = 0
        self.open = 0
        self.first: float | None = None
        self.last = 0.0


def answer(qn: bytes, pw: bytes, mn: bytes, flag: int, cn: bytes) -> bytes:
    segment = b"QN=%s;ST=91;CN=%s;PW=%s;MN=%s;Flag=%d;CP=&&&&" % (qn, cn, pw, mn, flag & 0xFC)
    return b"##%04d%s%04X\r\n" % (len(segment), segment, hj212_crc(segment))


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=19212)
    parser.add_argument("--backlog", type=int, default=4096)
    args = parser.parse_args()
    stats = Stats()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        stats.connections += 1
        stats.open += 1
        framer = hj212.StreamFramer(max_segment_size=8192)
        try:
            while chunk := await reader.read(65536):
                stats.bytes += len(chunk)
                out = []
                for event in framer.feed(chunk):
                    if not isinstance(event, hj212.RawFrame):
                        continue
                    stats.frames += 1
                    match = _HEAD.search(event.data, 0, 160)
                    if match is None:
                        continue
                    qn, cn, pw, mn, flag = match.groups()
                    flag_value = int(flag)
                    if cn == b"1013":
                        out.append(answer(qn, pw, mn, flag_value, b"9013"))
                    elif flag_value & 1 and not cn.startswith(b"90"):
                        out.append(answer(qn, pw, mn, flag_value, b"9014"))
                if out:
                    stats.acks += len(out)
                    writer.write(b"".join(out))
                now = time.monotonic()
                stats.first = stats.first or now
                stats.last = now
        except ConnectionError:
            pass
        finally:
            stats.open -= 1
            writer.close()

    server = await asyncio.start_server(serve, args.host, args.port, backlog=args.backlog)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(json.dumps({"listening": args.port}), flush=True)
    await stop.wait()
    server.close()
    span = (stats.last - stats.first) if stats.first else 0.0
    print(
        json.dumps(
            {
                "frames": stats.frames,
                "acks": stats.acks,
                "bytes": stats.bytes,
                "connections": stats.connections,
                "frames_per_s": round(stats.frames / span, 1) if span else None,
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(main())
