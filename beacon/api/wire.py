"""What the API accepts must travel and be stored: a message whose values the Avro schema cannot
carry (an ``int`` past 32 bits, a lone surrogate that is not UTF-8) or the database cannot store (a
NUL character, a value longer than its column) is refused with 422 up front, instead of failing
later as a 500, or as a database error that looks like an outage and is retried forever."""

from __future__ import annotations

import io
import json
from functools import cache
from typing import Any

import fastavro
from fastavro.validation import ValidationError, validate

from beacon.codec import load_schema_text, to_record
from beacon.messages import BeaconMessage

#: Values an Avro ``int`` holds.
INT32 = range(-(2**31), 2**31)

#: Longest values the tables store (see beacon.api.models).
FIELD_LIMITS = {
    "id": 64,
    "user_key": 255,
    "channel": 32,
    "account": 128,
    "user_id": 128,
    "direction": 16,
    "kind": 32,
    "channel_message_id": 255,
    "reply_to_id": 64,
    "status": 16,
    "profile_name": 255,
}


@cache
def _schema() -> Any:
    return fastavro.parse_schema(json.loads(load_schema_text()))


def too_long(values: dict[str, str | None]) -> list[str]:
    """``name (length > limit)`` for each value longer than its column."""
    return [
        f"{name} ({len(value)} > {FIELD_LIMITS[name]})"
        for name, value in values.items()
        if name in FIELD_LIMITS and value is not None and len(value) > FIELD_LIMITS[name]
    ]


def message_problems(msg: BeaconMessage) -> list[str]:
    """Why ``msg`` cannot be carried on the topics or stored, one phrase per problem; empty when it can.

    Every message the API processes passes here, and almost all of them can: a quick check answers
    for those (column lengths, one pass over the strings, the 32-bit ints, and an Avro encoding as the
    workers' codec does it), about a fifth of the cost of the walk below, whose phrases name each problem.
    """
    record = to_record(msg)
    if _carriable(msg, record):
        return []
    return described_problems(msg, record)


def described_problems(msg: BeaconMessage, record: dict[str, Any]) -> list[str]:
    """Every problem of ``msg`` (``record`` is its Avro record) in words: the thorough, slower walk."""
    problems = too_long({name: getattr(msg, name) for name in FIELD_LIMITS})
    problems += _string_problems(record, "")
    for path in _int_paths():
        value = _at(record, path)
        if isinstance(value, int) and value not in INT32:
            problems.append(f"{'.'.join(path)} {value} is outside the 32-bit range of its Avro int field")
    if not problems:
        try:  # anything else the schema refuses (no known case: a safety net, reported plainly)
            validate(record, _schema(), raise_errors=True)
        except ValidationError as exc:
            problems += [f"not valid for the Avro schema: {error}" for error in exc.errors][:3]
    return problems


def _carriable(msg: BeaconMessage, record: dict[str, Any]) -> bool:
    """True when ``message_problems`` would find nothing (False also when in doubt: the walk then decides)."""
    for name, limit in FIELD_LIMITS.items():
        value = getattr(msg, name)
        if value is not None and len(value) > limit:
            return False
    if _has_bad_text(record):
        return False
    for path in _int_paths():
        value = _at(record, path)
        if isinstance(value, int) and value not in INT32:
            return False
    try:
        fastavro.schemaless_writer(io.BytesIO(), _schema(), record)
    except Exception:  # whatever the writer refuses, the walk and fastavro's validation describe
        return False
    return True


def _has_bad_text(value: Any) -> bool:
    """Whether any string in ``value`` (keys included) has a problem ``text_problems`` would name."""
    if isinstance(value, str):
        return "\x00" in value or (not value.isascii() and bool(text_problems(value)))
    if isinstance(value, dict):
        return any(_has_bad_text(key) or _has_bad_text(item) for key, item in value.items())
    if isinstance(value, list | tuple):
        return any(_has_bad_text(item) for item in value)
    return False


@cache
def _int_paths() -> tuple[tuple[str, ...], ...]:
    """Paths of the schema's ``int`` fields (``long`` ones carry any Python int that JSON does)."""
    paths: list[tuple[str, ...]] = []

    def walk(schema: Any, path: tuple[str, ...]) -> None:
        if isinstance(schema, list):
            for branch in schema:
                walk(branch, path)
        elif isinstance(schema, dict) and schema.get("type") == "record":
            for f in schema["fields"]:
                walk(f["type"], (*path, f["name"]))
        elif schema == "int" or (isinstance(schema, dict) and schema.get("type") == "int"):
            paths.append(path)

    walk(json.loads(load_schema_text()), ())
    return tuple(paths)


def _at(record: Any, path: tuple[str, ...]) -> Any:
    for name in path:
        if not isinstance(record, dict):
            return None
        record = record.get(name)
    return record


def _string_problems(value: Any, path: str) -> list[str]:
    if isinstance(value, str):
        return [f"{path or 'a value'} {why}" for why in text_problems(value)]
    if isinstance(value, dict):
        out: list[str] = []
        for key, item in value.items():
            out += _string_problems(key, f"{path}[key]" if path else "a key")
            out += _string_problems(item, f"{path}.{key}" if path else str(key))
        return out
    if isinstance(value, list | tuple):
        return [p for i, item in enumerate(value) for p in _string_problems(item, f"{path}[{i}]")]
    return []


def text_problems(text: str) -> list[str]:
    """Why a string cannot be encoded as UTF-8 or stored in a text column."""
    problems = []
    if "\x00" in text:
        problems.append("contains a NUL character (\\u0000), which the database cannot store")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        problems.append(f"contains a lone surrogate {text[exc.start]!r} at {exc.start}: not valid UTF-8")
    return problems
