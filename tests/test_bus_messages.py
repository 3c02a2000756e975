"""The bus's payload format: what a commit announces, and what a listener reads back."""

from __future__ import annotations

import json
import uuid
from datetime import date
from decimal import Decimal

import pytest

from dal.bus.messages import MAX_PAYLOAD, BadMessage, decode, encode, encode_control
from dal.tracking.statements import ALL, NEW_ROWS


def roundtrip(pending: dict[str, set[tuple[object, ...]] | None]) -> dict[str, object]:
    encoded = encode("me", pending)
    assert encoded is not None
    message = decode(encoded[0])
    assert message.sender == "me"
    return dict(message.changes)


def test_keys_survive_the_round_trip() -> None:
    key = uuid.uuid4()
    pending = {"users": {(1,), (2,)}, "tags": {("a", "b")}, "docs": {(key,)}}
    changes = roundtrip(pending)  # type: ignore[arg-type]
    assert changes["users"] == {(1,), (2,)}
    assert changes["tags"] == {("a", "b")}
    # A UUID travels as text; the listener's PrimaryKey turns it back into a UUID.
    assert changes["docs"] == {(str(key),)}


def test_whole_table_new_rows_and_every_table_are_distinct() -> None:
    changes = roundtrip({"users": None, "orders": {NEW_ROWS, (5,)}})
    assert changes == {"users": None, "orders": {NEW_ROWS, (5,)}}
    assert roundtrip({ALL: None, "users": {(1,)}}) == {ALL: None}


@pytest.mark.parametrize("value", [date(2024, 1, 2), Decimal("1.5"), 1.5, b"x", True])
def test_keys_json_cannot_carry_exactly_send_the_whole_table(value: object) -> None:
    # A date read back from JSON is a string, which would not equal the cached key.
    assert roundtrip({"events": {(value,)}, "users": {(1,)}}) == {
        "events": None,
        "users": {(1,)},
    }


def test_nothing_to_send_is_none() -> None:
    assert encode("me", {}) is None


def test_a_payload_past_the_limit_drops_the_largest_key_lists_first() -> None:
    pending = {"big": {(i,) for i in range(3000)}, "small": {(1,), (2,)}}
    encoded = encode("me", pending)  # type: ignore[arg-type]
    assert encoded is not None
    payload, table_wide = encoded
    assert table_wide and len(payload.encode()) <= MAX_PAYLOAD
    assert decode(payload).changes == {"big": None, "small": {(1,), (2,)}}


def test_too_many_table_names_say_every_table() -> None:
    pending = {f"table_{i:05d}": None for i in range(1000)}
    encoded = encode("me", pending)
    assert encoded is not None
    assert decode(encoded[0]).changes == {ALL: None}
    assert len(encoded[0]) <= MAX_PAYLOAD


def test_non_ascii_is_escaped_so_characters_are_bytes() -> None:
    encoded = encode("me", {"naïve": {("é" * 10,)}})
    assert encoded is not None
    assert encoded[0].isascii()
    assert decode(encoded[0]).changes == {"naïve": {("é" * 10,)}}


def test_send_time_is_carried() -> None:
    encoded = encode("me", {"users": None})
    assert encoded is not None
    message = decode(encoded[0])
    assert message.sent_at is not None and message.sent_at > 1e9


def test_control_message_says_triggers_changed() -> None:
    message = decode(encode_control("cli"))
    assert message.triggers and message.sender == "cli" and message.changes == {}


def test_the_triggers_format_decodes() -> None:
    # What the plpgsql function builds with json_build_object.
    payload = '{"v" : 1, "s" : "trigger", "t" : 1.5e12, "c" : {"tags" : [[1, "x"]]}}'
    assert decode(payload).changes == {"tags": {(1, "x")}}


@pytest.mark.parametrize(
    "payload",
    [
        "not json",
        "[]",
        '{"v": 2, "s": "x", "c": {}}',
        '{"v": 1, "c": {}}',
        '{"v": 1, "s": "x", "c": []}',
        '{"v": 1, "s": "x", "c": {"users": 7}}',
        '{"v": 1, "s": "x", "c": {"users": [7]}}',
        '{"v": 1, "s": "x", "c": {"users": [[]]}}',
        '{"v": 1, "s": "x", "c": {"users": [[[1]]]}}',
    ],
)
def test_anything_else_is_a_bad_message(payload: str) -> None:
    with pytest.raises(BadMessage):
        decode(payload)


def test_encoded_payload_is_compact_json() -> None:
    encoded = encode("me", {"users": {(1,)}})
    assert encoded is not None
    data = json.loads(encoded[0])
    assert set(data) == {"v", "s", "t", "c"} and " " not in encoded[0]
