"""The bus's wire format: committed changes as one JSON NOTIFY payload, and back.

A message (``v`` is the format's version; the triggers build the same shape)::

    {"v": 1, "s": sender, "t": ms since the epoch, "c": {table: keys}}
    {"v": 1, "s": sender, "triggers": true}     # a table's triggers changed

``keys`` is ``null`` for "any row of the table", else a list whose items are
primary keys as JSON arrays (``[7]``, ``["books", "fiction"]``) and the string
``"new"`` for rows inserted with unknown keys. The table ``"*"`` stands for every
table. Only key values that survive JSON exactly (integers, strings, UUIDs as
strings) are sent one by one; a table with any other key type is sent whole,
since a date or a decimal read back from JSON would not equal the cached key.
"""

from __future__ import annotations

import dataclasses
import json
import time
import uuid
from collections.abc import Mapping
from typing import Any

from ..tracking.invalidation import Pending
from ..tracking.statements import ALL, NEW_ROWS

__all__ = ["CHANNEL", "MAX_PAYLOAD", "Message", "decode", "encode", "encode_control"]

#: The NOTIFY channel every dal process listens on (NOTIFY is per database).
CHANNEL = "dal_invalidation"

#: PostgreSQL rejects payloads of 8000 bytes or more (with the default page size).
MAX_PAYLOAD = 7999

VERSION = 1
_NEW = "new"
_EXACT = (int, str, uuid.UUID)


@dataclasses.dataclass(frozen=True)
class Message:
    """A decoded message: who sent it, when, and what it invalidates."""

    sender: str
    #: table -> primary-key tuples (``NEW_ROWS`` among them) or None for any row.
    changes: dict[str, set[tuple[Any, ...]] | None]
    #: Seconds since the epoch at the sender, if it said.
    sent_at: float | None = None
    #: The set of tables with triggers changed: refresh it.
    triggers: bool = False


class BadMessage(ValueError):
    """A payload on the channel that is not a message of this format."""


def encode(sender: str, pending: Pending, limit: int = MAX_PAYLOAD) -> tuple[str, bool] | None:
    """The payload announcing ``pending`` and whether it had to drop keys; None if empty.

    Past ``limit`` bytes, tables lose their key lists, largest first, and are
    sent whole; if the table names alone are too long, the message says "every table".
    """
    if not pending:
        return None
    tables: dict[str, list[Any] | None] = (
        {ALL: None} if ALL in pending else {name: _keys(pks) for name, pks in pending.items()}
    )
    head = {"v": VERSION, "s": sender, "t": round(time.time() * 1000, 3)}
    payload = _dump({**head, "c": tables})
    if len(payload) <= limit:
        return payload, False
    # ASCII only (json.dumps escapes the rest), so characters are bytes.
    by_size = sorted(
        (name for name, keys in tables.items() if keys is not None),
        key=lambda name: len(_dump(tables[name])),
        reverse=True,
    )
    for name in by_size:
        tables[name] = None
        payload = _dump({**head, "c": tables})
        if len(payload) <= limit:
            return payload, True
    return _dump({**head, "c": {ALL: None}}), True


def encode_control(sender: str) -> str:
    """The payload telling every listener that the set of tables with triggers changed."""
    return _dump({"v": VERSION, "s": sender, "triggers": True})


def decode(payload: str) -> Message:
    """The message in ``payload``; ``BadMessage`` if it is not one."""
    try:
        data = json.loads(payload)
    except ValueError as exc:
        raise BadMessage(f"not JSON: {payload[:80]!r}") from exc
    if not isinstance(data, dict) or data.get("v") != VERSION:
        raise BadMessage(f"not a version {VERSION} message: {payload[:80]!r}")
    sender = data.get("s")
    if not isinstance(sender, str):
        raise BadMessage(f"no sender: {payload[:80]!r}")
    sent = data.get("t")
    sent_at = float(sent) / 1000 if isinstance(sent, (int, float)) else None
    raw = data.get("c", {})
    if not isinstance(raw, dict):
        raise BadMessage(f"changes are not an object: {payload[:80]!r}")
    changes: dict[str, set[tuple[Any, ...]] | None] = {}
    for table, keys in raw.items():
        changes[table] = None if keys is None else _decode_keys(keys, payload)
    return Message(sender, changes, sent_at, data.get("triggers") is True)


def _keys(pks: set[tuple[Any, ...]] | None) -> list[Any] | None:
    """JSON for one table's keys, or None (the whole table) if a key is not exact."""
    if pks is None:
        return None
    out: list[Any] = []
    for pk in pks:
        if pk == NEW_ROWS:
            out.append(_NEW)
            continue
        values: list[Any] = []
        for value in pk:
            if isinstance(value, uuid.UUID):
                values.append(str(value))
            elif isinstance(value, _EXACT) and not isinstance(value, bool):
                values.append(value)
            else:
                return None
        out.append(values)
    return out


def _decode_keys(keys: Any, payload: str) -> set[tuple[Any, ...]]:
    if not isinstance(keys, list):
        raise BadMessage(f"keys are not a list: {payload[:80]!r}")
    pks: set[tuple[Any, ...]] = set()
    for key in keys:
        if key == _NEW:
            pks.add(NEW_ROWS)
        elif isinstance(key, list) and key:
            try:
                pks.add(tuple(key))
            except TypeError:  # a nested list: unhashable, and no key dal sends
                raise BadMessage(f"bad key {key!r}") from None
        else:
            raise BadMessage(f"bad key {key!r}")
    return pks


def _dump(value: Mapping[str, Any] | list[Any] | None) -> str:
    return json.dumps(value, separators=(",", ":"))
