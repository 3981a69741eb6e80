"""`beacon config show`: effective settings grouped by section, secrets masked, each with its source."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from beacon.config import FLAT_NAMES, FLAT_PATHS, SECTIONS, env_name

ROOT = Path(__file__).resolve().parents[1]


def _show(cwd: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("BEACON_")}
    return subprocess.run([sys.executable, "-m", "beacon", "config", "show", *args], cwd=cwd,
                          env={**clean, "PYTHONPATH": str(ROOT), **env}, capture_output=True, text=True, timeout=60)


def test_config_show_says_where_each_value_came_from_and_masks_secrets(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("BEACON_TOPIC_PARTITIONS=6\nBEACON_KAFKA_SASL_PASSWORD=from-dotenv-secret\n")
    env = {"BEACON_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "BEACON_KAFKA_SASL_USERNAME": "beacon",
           "BEACON_API_TOKEN": "env-token-secret", "BEACON_GATEWAY_PORT": "8181",
           "BEACON_WHATSAPP_ACCESS_TOKENS": '{"106540352242922": "per-number-secret"}'}
    shown = _show(tmp_path, env, "--json")
    assert shown.returncode == 0, shown.stderr
    groups = json.loads(shown.stdout)
    kafka, topic, api = groups["kafka"], groups["topics"], groups["api"]
    assert kafka["BEACON_KAFKA_SECURITY_PROTOCOL"] == {"value": "SASL_SSL", "source": "environment"}
    assert kafka["BEACON_KAFKA_SASL_PASSWORD"]["source"] == ".env"
    assert topic["BEACON_TOPIC_PARTITIONS"] == {"value": 6, "source": ".env"}
    assert kafka["BEACON_KAFKA_LINGER_MS"] == {"value": 5.0, "source": "default"}
    assert api["BEACON_API_TOKEN"]["source"] == "environment"
    # An old name sets the setting, shown under its name; a JSON object of secrets is masked value by value.
    assert groups["whatsapp"]["BEACON_WHATSAPP_GATEWAY_PORT"] == {"value": 8181, "source": "environment"}
    assert groups["whatsapp"]["BEACON_WHATSAPP_ACCESS_TOKENS"]["value"] == {"106540352242922": "**********"}
    # Every setting is shown once, in its section, sections in the order of the settings class.
    assert list(groups) == ["general", *SECTIONS]
    placed = {variable: group for group, found in groups.items() for variable in found}
    assert placed == {env_name(flat): FLAT_PATHS[flat][0] or "general" for flat in FLAT_NAMES}

    text = _show(tmp_path, env)
    assert text.returncode == 0, text.stderr
    assert "[kafka]" in text.stdout and "[topics]" in text.stdout
    assert any(line.split() == ["BEACON_TOPIC_PARTITIONS", "=", "6", "(.env)"] for line in text.stdout.splitlines())
    for output in (shown.stdout, text.stdout):
        assert "from-dotenv-secret" not in output and "env-token-secret" not in output
        assert "per-number-secret" not in output
        assert "**********" in output
