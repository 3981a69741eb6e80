"""Registering the BeaconMessage schema and checking a change against the registry's history.

The registry is the judge of compatibility; this module adds a readable account of what would
break, computed by comparing the working tree's schema with each registered version, in both
directions: new code reading old messages (backward) and old code reading new messages (forward).
``schemas/history/`` keeps every released version, so CI can check a change against them on a
fresh registry.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka.schema_registry import Schema, SchemaRegistryError

from beacon.codec import load_schema_text, make_registry_client, subject_for
from beacon.config import Settings
from beacon.errors import BeaconError

HISTORY_DIR = Path(__file__).resolve().parents[2] / "schemas" / "history"


class SchemaCheckError(BeaconError):
    """The working tree's schema is not compatible with the registered history."""


@dataclass
class SubjectReport:
    subject: str
    registered_versions: int
    compatible: bool
    registered_id: int | None = None
    problems: list[str] = field(default_factory=list)


def _fields(schema: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f["name"]: f for f in schema.get("fields", [])}


def _type_text(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _strip_docs(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_docs(v) for k, v in value.items() if k != "doc"}
    if isinstance(value, list):
        return [_strip_docs(v) for v in value]
    return value


def explain(old: dict[str, Any], new: dict[str, Any], *, version: str) -> list[str]:
    """What breaks between a registered version and the new schema, in words."""
    problems = []
    old_fields, new_fields = _fields(old), _fields(new)
    for name, spec in new_fields.items():
        if name not in old_fields and "default" not in spec:
            problems.append(
                f"field '{name}' is new and has no default: new code cannot read messages written with {version} "
                f"(add a default, e.g. \"default\": null with a [\"null\", ...] union)"
            )
    for name, spec in old_fields.items():
        if name not in new_fields and "default" not in spec:
            problems.append(
                f"field '{name}' was removed but has no default in {version}: code still on {version} cannot read "
                f"new messages (keep the field, or it must have had a default)"
            )
    for name in old_fields.keys() & new_fields.keys():
        before, after = _strip_docs(old_fields[name]["type"]), _strip_docs(new_fields[name]["type"])
        if _type_text(before) != _type_text(after):
            problems.append(
                f"field '{name}' changed type from {_type_text(before)[:120]} to {_type_text(after)[:120]}"
                f" (against {version}); only Avro promotions (int->long->float->double, string<->bytes) "
                f"and added union branches are safe"
            )
    return problems


def register(settings: Settings, topics: list[str] | None = None) -> dict[str, int]:
    """Set each subject's compatibility level and register the working tree's schema; subject -> id."""
    client = make_registry_client(settings)
    schema = Schema(load_schema_text(), "AVRO")
    ids = {}
    for topic in topics or [settings.topics.inbound, settings.topics.outbound]:
        subject = subject_for(topic)
        client.set_compatibility(subject, settings.registry.compatibility)
        try:
            ids[subject] = client.register_schema(subject, schema)
        except SchemaRegistryError as exc:
            if exc.http_status_code == 409:
                report = check_subject(settings, subject)
                raise SchemaCheckError(
                    f"the registry refused the schema for {subject}: it is not {settings.registry.compatibility} "
                    "compatible with what is registered:\n  - " + "\n  - ".join(report.problems or [str(exc)])
                ) from exc
            raise
    return ids


def check_subject(settings: Settings, subject: str, schema_text: str | None = None) -> SubjectReport:
    """Compare the working tree's schema with every registered version of ``subject``."""
    client = make_registry_client(settings)
    text = schema_text if schema_text is not None else load_schema_text()
    new = json.loads(text)
    try:
        versions = client.get_versions(subject)
    except SchemaRegistryError as exc:
        if exc.http_status_code == 404:
            return SubjectReport(subject, 0, True, problems=[])
        raise
    problems = []
    for number in versions:
        registered = client.get_version(subject, number)
        old = json.loads(registered.schema.schema_str or "{}")
        problems.extend(explain(old, new, version=f"version {number} (id {registered.schema_id})"))
    try:
        verdict = client.test_compatibility(subject, Schema(text, "AVRO"))
    except SchemaRegistryError as exc:
        verdict = False
        problems.append(f"registry: {exc}")
    if not verdict and not problems:
        problems.append("the registry reports an incompatibility this check cannot name; see its response")
    registered_id = None
    with contextlib.suppress(SchemaRegistryError):  # not registered yet: fine, it is only reported
        registered_id = client.lookup_schema(subject, Schema(text, "AVRO")).schema_id
    return SubjectReport(subject, len(versions), bool(verdict), registered_id, problems)


def seed_history(settings: Settings, subject: str, history_dir: Path = HISTORY_DIR) -> int:
    """Register every released schema (``schemas/history/*.v<N>.avsc``, in version order) under ``subject``."""
    files = sorted(history_dir.glob("*.avsc"), key=lambda p: int(p.stem.rsplit(".v", 1)[1]))
    client = make_registry_client(settings)
    client.set_compatibility(subject, settings.registry.compatibility)
    for path in files:
        client.register_schema(subject, Schema(json.dumps(json.loads(path.read_text())), "AVRO"))
    return len(files)
