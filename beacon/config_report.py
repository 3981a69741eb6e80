"""``beacon config show``: the effective settings, grouped by what they configure (mostly the first word
of their name), secrets masked, each with where its value came from: the environment, ``.env`` or the
default."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dotenv import dotenv_values
from pydantic import AliasChoices, SecretStr

from beacon.config import Settings, env_name

MASK = "**********"
#: First words that belong with another group (the rest group under their own first word).
_GROUP_OF = {"data": "general", "env": "general", "log": "general", "db": "database", "dlq": "topic",
             "registry": "schema", "mcp": "llm", "hook": "api", "window": "api", "history": "api",
             "outbox": "api", "fake": "dev", "served": "gateway"}


@dataclass(frozen=True)
class Entry:
    """One setting as it is in effect."""

    group: str
    variable: str
    value: Any
    source: str  # "environment", ".env" or "default"


def _variables(field: str) -> list[str]:
    """Every variable a setting is read from: its alias choices, else ``BEACON_<FIELD>``."""
    alias = Settings.model_fields[field].validation_alias
    if isinstance(alias, AliasChoices):
        return [c for c in alias.choices if isinstance(c, str)]
    return [env_name(field)]


def _shown(value: Any) -> Any:
    if isinstance(value, SecretStr):
        return MASK if value.get_secret_value() else ""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return [_shown(v) for v in value]
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    return value


def entries(settings: Settings, environ: dict[str, str] | None = None, env_file: Path = Path(".env")) -> list[Entry]:
    """Every setting with its effective value (secrets masked) and its source, grouped and sorted."""
    environ = dict(os.environ) if environ is None else environ
    upper_env = {k.upper() for k in environ}
    dotenv = {k.upper() for k in dotenv_values(env_file)} if env_file.is_file() else set()
    out = []
    for field in Settings.model_fields:
        names = [n.upper() for n in _variables(field)]
        if any(n in upper_env for n in names):
            source = "environment"
        elif any(n in dotenv for n in names):
            source = ".env"
        else:
            source = "default"
        first = field.split("_")[0]
        out.append(Entry(_GROUP_OF.get(first, first), env_name(field), _shown(getattr(settings, field)), source))
    return sorted(out, key=lambda e: (e.group, e.variable))


def as_text(found: list[Entry]) -> str:
    """A block per group: ``VARIABLE = value  (source)``."""
    lines: list[str] = []
    group = None
    width = max(len(e.variable) for e in found)
    for e in found:
        if e.group != group:
            if group is not None:
                lines.append("")
            lines.append(f"[{e.group}]")
            group = e.group
        value = "(unset)" if e.value is None else e.value if isinstance(e.value, str) else json.dumps(e.value)
        lines.append(f"  {e.variable:<{width}} = {value}  ({e.source})")
    return "\n".join(lines)


def as_json(found: list[Entry]) -> str:
    """``{group: {variable: {"value": ..., "source": ...}}}``."""
    groups: dict[str, dict[str, dict[str, Any]]] = {}
    for e in found:
        groups.setdefault(e.group, {})[e.variable] = {"value": e.value, "source": e.source}
    return json.dumps(groups, indent=2)
