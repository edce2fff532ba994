"""The sample frames in docs/hj212-electricity-profile.md verify and bind as documented."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import ecowatt_hj212 as hj212

DOC = Path(__file__).resolve().parents[3] / "docs" / "hj212-electricity-profile.md"


def doc_frames() -> list[str]:
    return re.findall(r"^(##\d{4}.*)$", DOC.read_text(encoding="utf-8"), flags=re.MULTILINE)


def test_doc_frames_have_correct_lengths_and_crcs(ref_crc: Callable[[bytes], int]) -> None:
    frames = doc_frames()
    assert len(frames) == 4
    for text in frames:
        segment = text[6:-4].encode()
        assert int(text[2:6]) == len(segment)
        assert text[-4:] == f"{ref_crc(segment):04X}"


def test_doc_frames_bind_every_reading_in_the_default_profile() -> None:
    profile = hj212.get_profile("ecowatt-default")
    for text in doc_frames():
        frame = hj212.decode(text + "\r\n", strict=True)
        coded = {(code, suffix) for code, group in frame.codes.items() for suffix in group}
        bound = {(r.code, r.suffix) for r in profile.readings(frame.codes)}
        assert bound == {item for item in coded if item[1] != "Flag"}


def test_doc_answer_is_the_library_answer() -> None:
    upload, answer = doc_frames()[:2]
    built = hj212.encode(hj212.commands.data_answer(hj212.decode(upload)))
    assert built == (answer + "\r\n").encode()
