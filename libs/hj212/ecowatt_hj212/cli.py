"""``hj212``: a field tool to decode, check, checksum and build HJ 212 frames."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any, BinaryIO, TextIO

from ._crc import CrcVariant, hj212_crc, modbus_crc, swap_bytes
from ._decoder import decode
from ._encoder import encode, encode_split
from ._errors import EncodeError, HJ212Error
from ._model import CrcPolicy, DecodeError, Frame, Message, Verdict
from ._profiles import get_profile, profile_names
from ._reasons import Reason


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``hj212`` console script; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        status: int = args.handler(args)
    except HJ212Error as error:
        print(f"hj212: {error.reason.value}: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"hj212: {error}", file=sys.stderr)
        return 2
    return status


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hj212", description="Decode, check, checksum and build HJ 212 frames."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("decode", help="decode one frame: fields, CP items, verdicts")
    p.add_argument("frame", nargs="?", help="the frame text; read from stdin when omitted")
    p.add_argument("--profile", choices=profile_names(), help="bind items through a profile")
    p.add_argument("--accept-crc", action="append", default=[], choices=_variants())
    p.add_argument("--json", action="store_true", help="print one JSON object instead")
    p.set_defaults(handler=_decode_command)

    p = sub.add_parser("check", help="check every frame of a file, one JSON result per line")
    p.add_argument("--jsonl", required=True, metavar="FILE", help="raw frames or JSON lines")
    p.add_argument("--accept-crc", action="append", default=[], choices=_variants())
    p.set_defaults(handler=_check_command)

    p = sub.add_parser("crc", help="compute the HJ 212 CRC of a data segment")
    p.add_argument("segment", nargs="?", help="data segment text; stdin when omitted")
    p.add_argument("--frame", action="store_true", help="the input is a whole frame")
    p.add_argument("--all", action="store_true", help="also print the MODBUS variants")
    p.set_defaults(handler=_crc_command)

    p = sub.add_parser("build", help="build a frame from a JSON message")
    p.add_argument("message", nargs="?", help="JSON object; stdin when omitted")
    p.add_argument("--split", type=int, metavar="BYTES", help="split segments above BYTES")
    p.set_defaults(handler=_build_command)
    return parser


def _variants() -> list[str]:
    return [variant.value for variant in CrcVariant]


def _policy(accepted: list[str]) -> CrcPolicy:
    return CrcPolicy(default=frozenset(CrcVariant(v) for v in accepted) | {CrcVariant.HJ212})


def _read_input(value: str | None) -> bytes:
    """The argument as UTF-8, or stdin's raw bytes (kept exact: trailers, GB18030 text)."""
    if value is not None:
        return value.encode("utf-8", "surrogateescape")
    return sys.stdin.buffer.read()


def _decode_command(args: argparse.Namespace) -> int:
    data = _read_input(args.frame)
    try:
        frame = decode(data, crc_policy=_policy(args.accept_crc))
        error: DecodeError | None = None
    except DecodeError as exc:
        if exc.frame is None:
            raise
        frame, error = exc.frame, exc
    if args.json:
        print(json.dumps(_frame_json(frame, error), ensure_ascii=False, indent=2))
    else:
        _print_frame(frame, error, args.profile, sys.stdout)
    return 0 if frame.ok and error is None else 1


def _print_frame(frame: Frame, error: DecodeError | None, profile: str | None, out: TextIO) -> None:
    def line(text: str = "") -> None:
        out.write(text + "\n")

    line(f"version   {frame.version.value} (from {frame.version_source})")
    for name in ("QN", "ST", "CN", "PW", "MN", "Flag", "PNUM", "PNO"):
        if name in frame.header:
            line(f"{name:<9} {frame.header[name]}")
    if frame.flag is not None:
        line(f"          A={int(frame.ack_requested)} D={int(bool(frame.flag & 2))}")
    for name, value in frame.header.items():
        if name not in ("QN", "ST", "CN", "PW", "MN", "Flag", "PNUM", "PNO"):
            line(f"{name:<9} {value}  (non-standard header field)")
    if frame.data_time is not None:
        line(f"DataTime  {frame.data_time.isoformat(sep=' ')}")
    line(f"trailer   {frame.trailer.value}   text encoding {frame.encoding}")
    line()
    bound = get_profile(profile) if profile else None
    rows = [("key", "value", "meaning" if bound else "")]
    for key, value in frame.items:
        meaning = ""
        if bound is not None:
            code, _, suffix = key.partition("-")
            binding = bound.resolve(code, suffix)
            if binding is not None:
                phase = f" phase {binding.phase}" if binding.phase else ""
                circuit = f" circuit {binding.circuit}" if binding.circuit is not None else ""
                meaning = f"{binding.quantity.value} [{binding.unit}]{circuit}{phase}"
        rows.append((key, value, meaning))
    width_key = max(len(r[0]) for r in rows)
    width_value = max(len(r[1]) for r in rows)
    for key, value, meaning in rows:
        line(f"  {key:<{width_key}}  {value:<{width_value}}  {meaning}".rstrip())
    line()
    for verdict in (frame.verification.length, frame.verification.crc):
        mark = "ok  " if verdict.ok else "FAIL"
        line(f"{verdict.check:<6} {mark} [{verdict.reason.value}] {verdict.explanation}")
        line(f"       expected {verdict.expected}  given {verdict.given}")
    if not frame.verification.crc.ok and frame.verification.crc_accepted:
        line("       the CRC variant is accepted for this device")
    for note in frame.notes:
        line(f"note   [{note.reason.value}] {note.message}")
    if error is not None:
        line(f"error  [{error.reason.value}] {error}")


def _verdict_json(verdict: Verdict) -> dict[str, Any]:
    return {
        "ok": verdict.ok,
        "reason": verdict.reason.value,
        "expected": verdict.expected,
        "given": verdict.given,
        "explanation": verdict.explanation,
    }


def _frame_json(frame: Frame | None, error: HJ212Error | None) -> dict[str, Any]:
    result: dict[str, Any] = {
        "length_ok": False,
        "crc_ok": False,
        "crc_variant": None,
        "crc_accepted": False,
        "version": None,
        "cn": None,
        "mn": None,
        "qn": None,
        "error": None if error is None else {"reason": error.reason.value, "message": str(error)},
    }
    if frame is not None:
        verification = frame.verification
        result.update(
            length_ok=verification.length.ok,
            crc_ok=verification.crc.ok,
            crc_variant=None
            if verification.crc.variant is None
            else verification.crc.variant.value,
            crc_accepted=verification.crc_accepted,
            version=frame.version.value,
            cn=frame.cn,
            mn=frame.mn,
            qn=frame.qn,
            length=_verdict_json(verification.length),
            crc=_verdict_json(verification.crc),
            notes=[{"reason": n.reason.value, "message": n.message} for n in frame.notes],
            items=[[key, value] for key, value in frame.items],
        )
    return result


def _check_command(args: argparse.Namespace) -> int:
    policy = _policy(args.accept_crc)
    all_ok = True
    if args.jsonl == "-":
        stream: BinaryIO = sys.stdin.buffer
        all_ok = _check_lines(stream, policy)
    else:
        with open(args.jsonl, "rb") as stream:
            all_ok = _check_lines(stream, policy)
    return 0 if all_ok else 1


def _check_lines(stream: BinaryIO, policy: CrcPolicy) -> bool:
    all_ok = True
    for number, line in enumerate(stream, start=1):
        if not line.strip():
            continue
        frame: Frame | None = None
        error: HJ212Error | None = None
        try:
            data = _frame_of_line(line)
            frame = decode(data, crc_policy=policy)
        except DecodeError as exc:
            frame, error = exc.frame, exc
        except HJ212Error as exc:
            error = exc
        result = {"line": number, **_frame_json(frame, error)}
        result.pop("items", None)
        all_ok = all_ok and error is None and frame is not None and frame.ok
        sys.stdout.write(json.dumps(result, ensure_ascii=False) + "\n")
    return all_ok


def _frame_of_line(line: bytes) -> bytes:
    """A raw line is the frame with its own line ending; a JSON line has a ``frame`` key."""
    if line.lstrip().startswith(b"{"):
        try:
            record = json.loads(line)
        except ValueError as exc:
            raise DecodeError(Reason.HEADER_MISSING, f"line is not valid JSON: {exc}") from exc
        frame = record.get("frame") if isinstance(record, dict) else None
        if not isinstance(frame, str):
            raise DecodeError(Reason.HEADER_MISSING, "JSON line has no string 'frame' key")
        return frame.encode("utf-8", "surrogatepass")
    return line


def _crc_command(args: argparse.Namespace) -> int:
    segment = _read_input(args.segment)
    if args.segment is None:
        segment = segment.rstrip(b"\r\n")
    if args.frame:
        segment = decode(segment).segment
    value = hj212_crc(segment)
    print(f"{value:04X}")
    if args.all:
        modbus = modbus_crc(segment)
        print(f"modbus_hi_lo {modbus:04X}")
        print(f"modbus_lo_hi {swap_bytes(modbus):04X}")
        print(f"length {len(segment):04d}")
    return 0


def _build_command(args: argparse.Namespace) -> int:
    message = message_from_json(_read_input(args.message))
    frames = encode_split(message, max_segment_size=args.split) if args.split else [encode(message)]
    for frame in frames:
        sys.stdout.write(frame.decode("utf-8"))
    return 0


def message_from_json(text: str | bytes) -> Message:
    """Build a :class:`Message` from JSON: header fields plus ``cp`` (object or pairs)."""
    try:
        data = json.loads(text)
        if not isinstance(data, dict) or "cn" not in data:
            raise ValueError("expected a JSON object with at least 'cn'")
        cp_data = data.get("cp", {})
        if isinstance(cp_data, dict):
            cp = tuple((str(k), str(v)) for k, v in cp_data.items())
        else:
            cp = tuple((str(k), str(v)) for k, v in cp_data)

        def text_field(name: str) -> str | None:
            value = data.get(name)
            return None if value is None else str(value)

        def int_field(name: str) -> int | None:
            value = data.get(name)
            return None if value is None else int(value)

        return Message(
            cn=str(data["cn"]),
            qn=text_field("qn"),
            st=text_field("st"),
            pw=text_field("pw"),
            mn=text_field("mn"),
            flag=int_field("flag"),
            pnum=int_field("pnum"),
            pno=int_field("pno"),
            cp=cp,
        )
    except (ValueError, TypeError) as exc:
        raise EncodeError(Reason.VALUE_ILLEGAL, f"bad message JSON: {exc}") from exc


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
