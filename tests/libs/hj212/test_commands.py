"""Answers and platform commands, checked against the standard's own frames."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import ecowatt_hj212 as hj212
import pytest
from ecowatt_hj212 import ProtocolVersion, commands

MN = "010000A8900016F000169DC0"
QN = "20160801085857223"


def sample(records: list[dict[str, Any]], prefix: str) -> bytes:
    return next(r["frame"] for r in records if r["frame"].startswith(prefix)).encode()


def test_set_realtime_interval_reproduces_appendix_a(sample_records: list[dict[str, Any]]) -> None:
    device = commands.Device(mn=MN, pw="100000", st="32")
    built = hj212.encode(commands.set_realtime_interval(device, 30, qn=QN))
    assert built == sample(sample_records, "##0101QN=20160801085857223;ST=32;CN=1062")


def test_data_answer_reproduces_c14(
    sample_records: list[dict[str, Any]], frame_of: Callable[..., bytes]
) -> None:
    upload = hj212.decode(
        frame_of(f"QN={QN};ST=32;CN=2011;PW=123456;MN={MN};Flag=5;CP=&&DataTime=20160801085857&&")
    )
    assert upload.ack_requested
    built = hj212.encode(commands.data_answer(upload))
    assert built == sample(sample_records, "##0087QN=20160801085857223;ST=91;CN=9014")


def test_execution_answer_reproduces_c1(
    sample_records: list[dict[str, Any]], frame_of: Callable[..., bytes]
) -> None:
    request = hj212.decode(frame_of(f"QN={QN};ST=32;CN=1062;PW=123456;MN={MN};Flag=5;CP=&&&&"))
    built = hj212.encode(commands.execution_answer(request, 1))
    assert built == sample(sample_records, "##0095QN=20160801085857223;ST=91;CN=9012")
    answer = hj212.decode(hj212.encode(commands.request_answer(request, 3)))
    assert (answer.cn, answer.st, answer.qn, answer.params) == ("9011", "91", QN, {"QnRtn": "3"})


def test_answers_use_the_devices_version_bits(frame_of: Callable[..., bytes]) -> None:
    upload_2025 = hj212.decode(frame_of(f"QN={QN};ST=44;CN=2011;PW=1;MN={MN};Flag=9;CP=&&&&"))
    answer = hj212.decode(hj212.encode(commands.data_answer(upload_2025)))
    assert answer.flag == 8 and answer.version is ProtocolVersion.V2025
    upload_2017_no_flag = hj212.decode(frame_of(f"QN={QN};ST=31;CN=2051;PW=1;MN={MN};CP=&&&&"))
    assert hj212.decode(hj212.encode(commands.data_answer(upload_2017_no_flag))).flag == 4


def test_2005_answers_carry_the_qn_inside_cp(frame_of: Callable[..., bytes]) -> None:
    request = hj212.decode(frame_of(f"QN={QN};ST=22;CN=1072;PW=123456;MN=ABC;Flag=3;CP=&&&&"))
    answer = commands.notification_answer(request)
    assert answer.qn is None and answer.flag == 0 and answer.cp == (("QN", QN),)
    assert answer.st == "91" and answer.cn == "9013"


def test_time_calibration_reply(sample_records: list[dict[str, Any]]) -> None:
    request = hj212.decode(sample(sample_records, "##0100QN=20160801085857223;ST=32;CN=1013"))
    answer, set_time = commands.time_calibration_reply(
        request, datetime(2016, 8, 1, 8, 58, 57), qn="20160801085858000"
    )
    assert hj212.decode(hj212.encode(answer)).cn == "9013"
    assert (answer.qn, answer.cp) == (QN, ())
    assert set_time.cn == "1012" and set_time.qn == "20160801085858000"
    assert set_time.cp == (("PolId", "w01018"), ("SystemTime", "20160801085857"))
    assert set_time.flag == 5 and set_time.st == "32"


DEVICE = commands.Device(mn="EW0001", pw="123456", st="31")
BEGIN, END = datetime(2025, 6, 1, 0, 0), datetime(2025, 6, 2, 0, 0)


@pytest.mark.parametrize(
    ("message", "cn", "cp"),
    [
        (commands.get_time(DEVICE, qn=QN), "1011", ()),
        (commands.get_time(DEVICE, qn=QN, pol_id="w01018"), "1011", (("PolId", "w01018"),)),
        (
            commands.set_time(DEVICE, datetime(2025, 6, 1, 8, 0, 0), qn=QN),
            "1012",
            (("SystemTime", "20250601080000"),),
        ),
        (commands.get_realtime_interval(DEVICE, qn=QN), "1061", ()),
        (commands.start_realtime_data(DEVICE, qn=QN), "2011", ()),
        (commands.stop_realtime_data(DEVICE, qn=QN), "2012", ()),
        (commands.start_facility_state(DEVICE, qn=QN), "2021", ()),
        (commands.stop_facility_state(DEVICE, qn=QN), "2022", ()),
        (
            commands.get_minute_data(DEVICE, BEGIN, END, qn=QN),
            "2051",
            (("BeginTime", "20250601000000"), ("EndTime", "20250602000000")),
        ),
        (
            commands.get_hour_data(DEVICE, BEGIN, END, qn=QN),
            "2061",
            (("BeginTime", "20250601000000"), ("EndTime", "20250602000000")),
        ),
        (
            commands.get_day_data(DEVICE, BEGIN, END, qn=QN),
            "2031",
            (("BeginTime", "20250601000000"), ("EndTime", "20250602000000")),
        ),
        (
            commands.get_runtime_data(DEVICE, BEGIN, END, qn=QN),
            "2041",
            (("BeginTime", "20250601000000"), ("EndTime", "20250602000000")),
        ),
        (
            commands.get_field_info(DEVICE, info_id="i33201", pol_id="w00000", qn=QN),
            "3020",
            (("PolId", "w00000"), ("InfoId", "i33201")),
        ),
    ],
)
def test_platform_commands(
    message: hj212.Message, cn: str, cp: tuple[tuple[str, str], ...]
) -> None:
    frame = hj212.decode(hj212.encode(message), strict=True)
    assert (frame.cn, frame.qn, frame.st, frame.mn, frame.pw, frame.flag) == (
        cn,
        QN,
        "31",
        "EW0001",
        "123456",
        5,
    )
    assert tuple(frame.items) == cp


def test_commands_take_qn_from_the_clock() -> None:
    message = commands.get_time(DEVICE, clock=lambda: datetime(2025, 6, 1, 8, 0, 0, 123456))
    assert message.qn == "20250601080000123"


def test_2025_device_commands_use_flag_9() -> None:
    device = commands.Device(mn="EW0001", pw="1", st="44", version=ProtocolVersion.V2025)
    assert commands.start_realtime_data(device, qn=QN).flag == 9


def test_realtime_interval_range_is_checked() -> None:
    with pytest.raises(hj212.EncodeError):
        commands.set_realtime_interval(DEVICE, 10, qn=QN)
