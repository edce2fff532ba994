"""`ecowatt_kernel.ids`: RFC 9562 UUIDv7 — version and variant bits, time first, unique."""

from __future__ import annotations

import time
import uuid

from ecowatt_kernel.ids import new_id, new_uuid, new_uuid_text, new_uuid_texts


def test_ids_are_uuid_version_7_with_the_rfc_variant() -> None:
    for value in (new_uuid(), uuid.UUID(new_id()), uuid.UUID(new_uuid_text())):
        assert value.version == 7 and value.variant == uuid.RFC_4122
    text = new_uuid_text()
    assert len(new_id()) == 32 and str(uuid.UUID(text)) == text


def test_ids_carry_their_creation_millisecond_and_sort_by_it() -> None:
    before = time.time_ns() // 1_000_000
    first = new_uuid()
    time.sleep(0.003)
    second = new_uuid()
    after = time.time_ns() // 1_000_000
    assert before <= first.int >> 80 <= second.int >> 80 <= after
    assert first.int >> 80 < second.int >> 80 and first.hex < second.hex


def test_ids_do_not_repeat() -> None:
    assert len({new_id() for _ in range(50_000)}) == 50_000


def test_a_batch_of_ids_is_as_many_distinct_version_7_ids_of_this_millisecond() -> None:
    before = time.time_ns() // 1_000_000
    texts = new_uuid_texts(20_000)
    after = time.time_ns() // 1_000_000
    assert len(texts) == len(set(texts)) == 20_000 and new_uuid_texts(0) == []
    variants = set()
    for text in texts[:2_000]:
        value = uuid.UUID(text)
        assert str(value) == text
        assert value.version == 7 and value.variant == uuid.RFC_4122
        assert before <= value.int >> 80 <= after
        variants.add(text[19])
    assert variants == set("89ab")  # the variant's two free bits are random, not fixed
