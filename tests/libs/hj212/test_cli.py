"""The hj212 field tool."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ecowatt_hj212 as hj212
import pytest
from ecowatt_hj212.cli import main

APPENDIX_A = (
    "##0101QN=20160801085857223;ST=32;CN=1062;PW=100000;MN=010000A8900016F000169DC0;"
    "Flag=5;CP=&&RtdInterval=30&&1C80\r\n"
)


def test_decode_prints_fields_items_and_verdicts(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["decode", APPENDIX_A]) == 0
    out = capsys.readouterr().out
    assert "CN        1062" in out and "RtdInterval  30" in out
    assert "crc    ok   [crc_ok]" in out and "expected 1C80  given 1C80" in out


def test_decode_explains_a_failure(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["decode", APPENDIX_A.replace("1C80", "0759")]) == 1
    out = capsys.readouterr().out
    assert "[crc_modbus_hi_lo]" in out and "expected 1C80  given 0759" in out
    assert "MODBUS" in out


def test_decode_accepting_a_variant(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["decode", "--accept-crc", "modbus_hi_lo", APPENDIX_A.replace("1C80", "0759")]) == 0
    assert "accepted" in capsys.readouterr().out


def test_decode_with_profile_and_json(capsys: pytest.CaptureFixture[str]) -> None:
    frame = hj212.encode(
        hj212.Message(
            cn="2011", st="31", cp=(("DataTime", "20250601084500"), ("xe1102-Rtd", "3.5"))
        )
    ).decode()
    assert main(["decode", "--profile", "ecowatt-default", frame]) == 0
    assert "current_a [A] circuit 2 phase A" in capsys.readouterr().out
    assert main(["decode", "--json", frame]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["items"] == [["DataTime", "20250601084500"], ["xe1102-Rtd", "3.5"]]


def test_check_jsonl_reports_the_files_verdicts(
    capsys: pytest.CaptureFixture[str], sample_records: list[dict[str, Any]], samples_path: Path
) -> None:
    assert main(["check", "--jsonl", str(samples_path)]) == 1  # the file has failing frames
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(sample_records)
    for line, record in zip(lines, sample_records, strict=True):
        result = json.loads(line)
        assert {"length_ok", "crc_ok", "crc_variant", "version", "cn", "mn", "error"} <= set(result)
        assert (result["length_ok"], result["crc_ok"]) == (record["length_ok"], record["crc_ok"])
        assert result["cn"] == record["cn"]


def test_check_accepts_raw_lines_and_reports_errors(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "mixed.log"
    path.write_bytes(
        APPENDIX_A.encode()
        + b'{"frame": "##0010nothing"}\n'
        + b"garbage line\n"
        + b'{"no_frame": 1}\n'
        + b"{not json\n"
    )
    assert main(["check", "--jsonl", str(path)]) == 1
    results = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert (
        results[0]["crc_ok"]
        and results[0]["crc_variant"] == "hj212"
        and results[0]["error"] is None
    )
    assert results[1]["error"]["reason"] == "cp_missing" and results[1]["length_ok"] is False
    assert results[2]["error"]["reason"] == "header_missing"
    assert results[3]["error"] is not None and results[4]["error"] is not None
    assert [r["line"] for r in results] == [1, 2, 3, 4, 5]


def test_check_all_good_exits_zero(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "good.jsonl"
    path.write_text(json.dumps({"frame": APPENDIX_A}) + "\n")
    assert main(["check", "--jsonl", str(path)]) == 0


def test_crc_command(capsys: pytest.CaptureFixture[str]) -> None:
    segment = APPENDIX_A[6:-6]
    assert main(["crc", segment, "--all"]) == 0
    assert capsys.readouterr().out.split() == [
        "1C80",
        "modbus_hi_lo",
        "0759",
        "modbus_lo_hi",
        "5907",
        "length",
        "0101",
    ]
    assert main(["crc", "--frame", APPENDIX_A.replace("1C80", "FFFF")]) == 0
    assert capsys.readouterr().out.strip() == "1C80"


def test_build_command_round_trips(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    message = {
        "qn": "20160801085857223",
        "st": "32",
        "cn": "1062",
        "pw": "100000",
        "mn": "010000A8900016F000169DC0",
        "flag": 5,
        "cp": {"RtdInterval": 30},
    }
    assert main(["build", json.dumps(message)]) == 0
    assert capsys.readouterr().out == APPENDIX_A
    pairs = json.dumps({**message, "cp": [["RtdInterval", "30"]]})
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(pairs.encode())))
    assert main(["build"]) == 0
    assert capsys.readouterr().out == APPENDIX_A


def test_build_split(capsys: pytest.CaptureFixture[str]) -> None:
    cp = {"DataTime": "20250601084000", **{f"xe01{i:02d}-Avg": "1.5" for i in range(60)}}
    assert main(["build", "--split", "300", json.dumps({"cn": "2051", "st": "31", "cp": cp})]) == 0
    frames = [line + "\r\n" for line in capsys.readouterr().out.split("\r\n") if line]
    decoded = [hj212.decode(f, strict=True) for f in frames]
    assert len(decoded) > 1 and all(f.pnum == len(decoded) for f in decoded)


@pytest.mark.parametrize("bad", ["[]", "{}", '{"cn": "2011", "flag": "x"}', "not json"])
def test_build_rejects_bad_json(capsys: pytest.CaptureFixture[str], bad: str) -> None:
    assert main(["build", bad]) == 2
    assert "value_illegal" in capsys.readouterr().err


def test_decode_reads_exact_bytes_from_stdin(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    frame_of: Callable[..., bytes],
) -> None:
    data = frame_of("ST=32;CN=3020;CP=&&i11001-Info=//设备故障//&&".encode("gb18030"))
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(data)))
    assert main(["decode"]) == 0
    out = capsys.readouterr().out
    assert "trailer   crlf   text encoding gb18030" in out and "//设备故障//" in out
