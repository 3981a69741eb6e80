"""``beacon schemas register / check`` against the real registry."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable

from beacon.codec import load_schema_text, subject_for
from beacon.config import Settings
from beacon.ops import schemas
from tests.conftest import ROOT


def cli_env(settings: Settings, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BEACON_")}
    env.update(
        BEACON_DATA_DIR=str(settings.data_dir),
        BEACON_KAFKA_BOOTSTRAP=settings.kafka.bootstrap,
        BEACON_SCHEMA_REGISTRY_URL=settings.registry.url,
        **extra,
    )
    return env


def beacon(settings: Settings, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "beacon", *args], cwd=ROOT, env=cli_env(settings, **extra),
                          capture_output=True, text=True, timeout=120, check=False)


def test_register_sets_full_transitive_and_is_idempotent(registry_settings: Settings,
                                                          unique: Callable[[str], str]) -> None:
    topic_in, topic_out = unique("in"), unique("out")
    env = {"BEACON_TOPIC_IN": topic_in, "BEACON_TOPIC_OUT": topic_out}
    first = beacon(registry_settings, "schemas", "register", **env)
    assert first.returncode == 0, first.stderr
    assert f"{topic_in}-value: schema id" in first.stdout and "FULL_TRANSITIVE" in first.stdout
    again = beacon(registry_settings, "schemas", "register", **env)
    assert again.stdout == first.stdout  # same ids, nothing new registered
    check = beacon(registry_settings, "schemas", "check", **env)
    assert check.returncode == 0 and "already registered" in check.stdout


def test_working_tree_schema_is_compatible_with_the_released_history(registry_settings: Settings) -> None:
    result = beacon(registry_settings, "schemas", "check", "--history")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "compatible" in result.stdout or "already registered" in result.stdout


def test_an_incompatible_change_is_refused_with_what_would_break(registry_settings: Settings,
                                                                 unique: Callable[[str], str]) -> None:
    subject = subject_for(unique("hist"))
    schemas.seed_history(registry_settings, subject)
    broken = json.loads(load_schema_text())
    broken["fields"] = [f for f in broken["fields"] if f["name"] != "user_key"]  # removed, had no default
    broken["fields"].append({"name": "tenant", "type": "string"})  # new, without a default
    report = schemas.check_subject(registry_settings, subject, json.dumps(broken))
    assert not report.compatible
    text = "\n".join(report.problems)
    assert "field 'tenant' is new and has no default" in text
    assert "field 'user_key' was removed but has no default" in text
    good = json.loads(load_schema_text())
    good["fields"].append({"name": "tenant", "type": ["null", "string"], "default": None, "doc": "x"})
    assert schemas.check_subject(registry_settings, subject, json.dumps(good)).compatible
