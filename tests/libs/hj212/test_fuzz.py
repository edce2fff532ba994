"""Short fuzz run: no input raises outside the library's exception tree (long run: make)."""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path
from types import ModuleType

from hypothesis import given, settings
from hypothesis import strategies as st

HARNESS = Path(__file__).resolve().parents[3] / "libs" / "hj212" / "fuzz" / "fuzz_hj212.py"


def load_harness() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fuzz_hj212", HARNESS)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


HARNESS_MODULE = load_harness()


def test_mutation_fuzzing_for_a_few_seconds() -> None:
    started = time.perf_counter()
    ran = HARNESS_MODULE.run_random(8000, seed=int(started) % 1000, report=lambda _: None)
    assert ran == 8000


def test_seeds_include_the_shared_samples() -> None:
    assert len(HARNESS_MODULE.seeds()) > 35


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=400))
def test_arbitrary_bytes(data: bytes) -> None:
    HARNESS_MODULE.exercise(data)


@settings(max_examples=500, deadline=None)
@given(
    st.lists(st.sampled_from(HARNESS_MODULE.TOKENS) | st.binary(max_size=6), max_size=30).map(
        b"".join
    )
)
def test_token_soup(data: bytes) -> None:
    HARNESS_MODULE.exercise(b"##0100" + data)
    HARNESS_MODULE.exercise(data)
