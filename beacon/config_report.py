"""``beacon config show``: the effective settings, grouped by what they configure (the sections of
``Settings``: ``kafka``, ``topics``...), secrets masked, each with where its value came from: the environment,
``.env`` or the default."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dotenv import dotenv_values
from pydantic import SecretStr

from beacon.config import FLAT_NAMES, FLAT_PATHS, SECTIONS, Settings, env_name, variables

MASK = "**********"


@dataclass(frozen=True)
class Entry:
    """One setting as it is in effect."""

    group: str  # the section (``kafka``, ``topics``...), ``general`` for the settings outside any
    variable: str
    value: Any
    source: str  # "environment", ".env" or "default"


def _shown(value: Any) -> Any:
    if isinstance(value, SecretStr):
        return MASK if value.get_secret_value() else ""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return [_shown(v) for v in value]
    if isinstance(value, dict):
        return {k: _shown(v) for k, v in value.items()}
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    return value


def entries(settings: Settings, environ: dict[str, str] | None = None, env_file: Path = Path(".env")) -> list[Entry]:
    """Every setting with its effective value (secrets masked) and its source, grouped (general first, then the
    sections in the order of ``Settings``) and sorted by variable."""
    environ = dict(os.environ) if environ is None else environ
    upper_env = {k.upper() for k in environ}
    dotenv = {k.upper() for k in dotenv_values(env_file)} if env_file.is_file() else set()
    out = []
    for flat in FLAT_NAMES:
        names = [n.upper() for n in variables(flat)]
        if any(n in upper_env for n in names):
            source = "environment"
        elif any(n in dotenv for n in names):
            source = ".env"
        else:
            source = "default"
        section, field = FLAT_PATHS[flat]
        value = getattr(settings if section is None else getattr(settings, section), field)
        out.append(Entry(section or "general", env_name(flat), _shown(value), source))
    order = ["general", *SECTIONS]
    return sorted(out, key=lambda e: (order.index(e.group), e.variable))


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
