"""The sent log: what every device sent and which of it the platform acknowledged.

A test proves that nothing was lost by checking that every QN in `qns` appears in
`hj212.frames` (and, when the run drained, that `unacked` is empty). Written on demand as
JSON lines, one object per device, then one summary line:

    {"type": "device", "mn": "…", "enterprise_id": "…",
     "frames": 1520,                     # frames written, first sends only
     "by_cn": {"2011": 1440, "2051": 72, "9011": 2, …},
     "by_kind": {"realtime": 1440, "minute": 72, "backfill": 6, "answer": 4, …},
     "qns": ["20251201080000000", …],    # uploads that asked for an answer, in send order
     "unacked": [],                      # the subset of qns never answered (9014/9013)
     "resends": 3, "no_ack": [["2011", "20251201080000"], …],   # 2005-style, keyed (CN, DataTime)
     "answers": [["9011", "QN"], …], "bytes": 912345, "garbage_bytes": 0,
     "connects": 2, "connect_failures": 0, "disconnects": 1, "backoff_s": [1.2, 2.3],
     "duplicate_acks": 0, "unexpected_acks": 0, "refused": {"3": 12}}
    {"type": "summary", "devices": 10, "frames": …, "acked": …, "unacked": …, "resends": …,
     "ack_latency": {"count": …, "p50_ms": …, "p99_ms": …, "max_ms": …, "buckets": {…}}}

`refused` counts the platform's 9011/9012 answers to this device's uploads by return code
(a strict platform refuses an unknown MN with QnRtn 4, a wrong PW with 3): the upload stays
unanswered and is sent again. `ack_latency` is measured from the last write of an upload to
its answer (wall clock), for every device together, in 1 % logarithmic buckets
(`LatencyHistogram`, mergeable across processes).

`SentLog(keep_qns=False)` keeps counts only (for load tests that send millions of frames).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

__all__ = ["DeviceLog", "LatencyHistogram", "SentLog"]

_MAX_BACKOFFS = 64
_LAT_BASE = 1e-5  # 10 µs
_LAT_STEP = math.log(1.01)


class LatencyHistogram:
    """Latencies in 1 % logarithmic buckets from 10 µs: constant memory, mergeable.

    A quantile is the geometric middle of its bucket (error under 0.5 %)."""

    __slots__ = ("buckets", "count", "max")

    def __init__(self) -> None:
        self.buckets: Counter[int] = Counter()
        self.count = 0
        self.max = 0.0

    def add(self, seconds: float) -> None:
        index = int(math.log(seconds / _LAT_BASE) / _LAT_STEP) if seconds > _LAT_BASE else 0
        self.buckets[index] += 1
        self.count += 1
        if seconds > self.max:
            self.max = seconds

    def merge(self, other: LatencyHistogram) -> None:
        self.buckets.update(other.buckets)
        self.count += other.count
        self.max = max(self.max, other.max)

    def quantile(self, q: float) -> float | None:
        """The `q` quantile in seconds (None when empty)."""
        if not self.count:
            return None
        rank = max(1, math.ceil(q * self.count))
        seen = 0
        for index in sorted(self.buckets):
            seen += self.buckets[index]
            if seen >= rank:
                return float(_LAT_BASE * math.exp((index + 0.5) * _LAT_STEP))
        return self.max

    def to_json(self) -> dict[str, Any]:
        def ms(value: float | None) -> float | None:
            return None if value is None else round(value * 1000, 3)

        return {
            "count": self.count,
            "p50_ms": ms(self.quantile(0.5)),
            "p90_ms": ms(self.quantile(0.9)),
            "p99_ms": ms(self.quantile(0.99)),
            "max_ms": ms(self.max if self.count else None),
            "buckets": {str(k): v for k, v in sorted(self.buckets.items())},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LatencyHistogram:
        hist = cls()
        for key, value in data.get("buckets", {}).items():
            hist.buckets[int(key)] += int(value)
        hist.count = int(data.get("count", sum(hist.buckets.values())))
        hist.max = float(data.get("max_ms") or 0.0) / 1000
        return hist


@dataclass(slots=True)
class DeviceLog:
    mn: str
    enterprise_id: str | None = None
    keep_qns: bool = True
    frames: int = 0
    by_cn: Counter[str] = field(default_factory=Counter)
    by_kind: Counter[str] = field(default_factory=Counter)
    qns: list[str] = field(default_factory=list)
    acked: set[str] = field(default_factory=set)
    acked_count: int = 0
    ack_requested: int = 0
    resends: int = 0
    no_ack: list[tuple[str, str]] = field(default_factory=list)
    answers: list[tuple[str, str]] = field(default_factory=list)
    bytes: int = 0
    garbage_bytes: int = 0
    connects: int = 0
    connect_failures: int = 0
    disconnects: int = 0
    backoff_s: list[float] = field(default_factory=list)
    duplicate_acks: int = 0
    unexpected_acks: int = 0
    refused: Counter[str] = field(default_factory=Counter)

    def sent(
        self, cn: str, kind: str, qn: str | None, nbytes: int, *, ack: bool, data_time: str | None
    ) -> None:
        """A frame written for the first time."""
        self.frames += 1
        self.bytes += nbytes
        self.by_cn[cn] += 1
        self.by_kind[kind] += 1
        if ack and qn is not None:
            self.ack_requested += 1
            if self.keep_qns:
                self.qns.append(qn)
        elif kind in ("answer", "reply"):  # to a platform request: its QN
            if self.keep_qns:
                self.answers.append((cn, qn or ""))
        elif self.keep_qns:
            self.no_ack.append((cn, data_time or ""))

    def resent(self, nbytes: int) -> None:
        self.resends += 1
        self.bytes += nbytes

    def ack(self, qn: str) -> None:
        self.acked_count += 1
        if self.keep_qns:
            self.acked.add(qn)

    def backoff(self, delay: float) -> None:
        self.backoff_s.append(round(delay, 3))
        if len(self.backoff_s) > _MAX_BACKOFFS:
            del self.backoff_s[0]

    @property
    def unacked(self) -> list[str]:
        """QNs that asked for an answer and never got one (needs `keep_qns`)."""
        return [qn for qn in self.qns if qn not in self.acked]

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "device",
            "mn": self.mn,
            "enterprise_id": self.enterprise_id,
            "frames": self.frames,
            "by_cn": dict(sorted(self.by_cn.items())),
            "by_kind": dict(sorted(self.by_kind.items())),
            "ack_requested": self.ack_requested,
            "acked": self.acked_count,
            "qns": self.qns,
            "unacked": self.unacked,
            "resends": self.resends,
            "no_ack": [list(item) for item in self.no_ack],
            "answers": [list(item) for item in self.answers],
            "bytes": self.bytes,
            "garbage_bytes": self.garbage_bytes,
            "connects": self.connects,
            "connect_failures": self.connect_failures,
            "disconnects": self.disconnects,
            "backoff_s": self.backoff_s,
            "duplicate_acks": self.duplicate_acks,
            "unexpected_acks": self.unexpected_acks,
            "refused": dict(sorted(self.refused.items())),
        }


class SentLog:
    """Per-device `DeviceLog`s of one simulator run."""

    def __init__(self, *, keep_qns: bool = True) -> None:
        self.keep_qns = keep_qns
        self.devices: dict[str, DeviceLog] = {}
        self.latency = LatencyHistogram()
        """Upload → answer, every device (wall seconds)."""

    def device(self, mn: str, enterprise_id: str | None = None) -> DeviceLog:
        found = self.devices.get(mn)
        if found is None:
            found = self.devices[mn] = DeviceLog(mn, enterprise_id, keep_qns=self.keep_qns)
        return found

    def __getitem__(self, mn: str) -> DeviceLog:
        return self.devices[mn]

    def __iter__(self) -> Iterator[DeviceLog]:
        return iter(self.devices.values())

    def all_qns(self) -> dict[str, list[str]]:
        """Every QN that asked for an answer, by MN."""
        return {mn: list(d.qns) for mn, d in self.devices.items()}

    def unacked(self) -> dict[str, list[str]]:
        """QNs never answered, by MN (devices with none are absent)."""
        return {mn: d.unacked for mn, d in self.devices.items() if d.unacked}

    def summary(self) -> dict[str, Any]:
        devices = list(self.devices.values())
        by_cn: Counter[str] = Counter()
        for d in devices:
            by_cn.update(d.by_cn)
        return {
            "type": "summary",
            "devices": len(devices),
            "frames": sum(d.frames for d in devices),
            "ack_requested": sum(d.ack_requested for d in devices),
            "acked": sum(d.acked_count for d in devices),
            "unacked": sum(d.ack_requested - d.acked_count for d in devices),
            "resends": sum(d.resends for d in devices),
            "bytes": sum(d.bytes for d in devices),
            "connects": sum(d.connects for d in devices),
            "connect_failures": sum(d.connect_failures for d in devices),
            "refused": sum(sum(d.refused.values()) for d in devices),
            "by_cn": dict(sorted(by_cn.items())),
            "ack_latency": self.latency.to_json(),
        }

    def write_jsonl(self, out: TextIO) -> None:
        for mn in sorted(self.devices):
            out.write(json.dumps(self.devices[mn].to_json(), separators=(",", ":")) + "\n")
        out.write(json.dumps(self.summary(), separators=(",", ":")) + "\n")

    def write(self, path: str | Path) -> None:
        """Write the log as JSON lines to `path`."""
        with Path(path).open("w", encoding="utf-8") as out:
            self.write_jsonl(out)

    @staticmethod
    def read(path: str | Path) -> list[dict[str, Any]]:
        """The JSON objects of a written log (device lines, then the summary)."""
        return [json.loads(line) for line in Path(path).read_text().splitlines() if line]
