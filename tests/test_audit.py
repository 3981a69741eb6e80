"""scripts/audit: a vulnerability in the locked set fails; a vulnerability service that answers for
nothing is reported loudly without failing (this machine's case)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.conftest import ROOT

#: A stand-in for pip-audit: writes the JSON report the test gives it for the service it is asked for.
FAKE = """\
import json, sys
args = sys.argv[1:]
service = args[args.index("--vulnerability-service") + 1]
reports = json.loads(open(sys.argv[0] + ".json").read())
if service not in reports:
    sys.exit("ConnectionError: Failed to resolve 'api.osv.dev'")
open(args[args.index("--output") + 1], "w").write(json.dumps(reports[service]))
sys.exit(1 if any(d.get("vulns") for d in reports[service]["dependencies"]) else 0)
"""


def audit(tmp_path: Path, reports: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    fake = tmp_path / "pip-audit"
    fake.write_text(f"#!{sys.executable}\n{FAKE}")
    fake.chmod(0o755)
    Path(f"{fake}.json").write_text(json.dumps(reports))
    return subprocess.run([str(ROOT / "scripts" / "audit")], env={**os.environ, "BEACON_PIP_AUDIT": str(fake)},
                          capture_output=True, text=True, timeout=120, check=False)


def not_found(name: str) -> dict[str, str]:
    reason = f"Dependency not found on PyPI and could not be audited: {name}"
    return {"name": name, "version": "1.0", "skip_reason": reason}


def test_a_known_vulnerability_fails_naming_package_advisory_and_fix(tmp_path: Path) -> None:
    vuln = {"id": "GHSA-xxxx-yyyy-zzzz", "fix_versions": ["2.0.1"], "aliases": [], "description": ""}
    run = audit(tmp_path, {"pypi": {"dependencies": [{"name": "fastapi", "version": "0.1", "vulns": []},
                                                    {"name": "orjson", "version": "2.0", "vulns": [vuln]}]}})
    assert run.returncode == 1, run.stdout + run.stderr
    assert "orjson 2.0: GHSA-xxxx-yyyy-zzzz (fixed in: 2.0.1)" in run.stdout


def test_a_clean_audit_passes_and_says_how_many_it_checked(tmp_path: Path) -> None:
    run = audit(tmp_path, {"pypi": {"dependencies": [{"name": "fastapi", "version": "0.1", "vulns": []}]}})
    assert run.returncode == 0, run.stdout + run.stderr
    assert "no known vulnerability in 1 locked packages" in run.stdout


def test_no_answering_service_is_said_loudly_but_does_not_fail(tmp_path: Path) -> None:
    run = audit(tmp_path, {"pypi": {"dependencies": [not_found("fastapi"), not_found("orjson")]}})
    assert run.returncode == 0, run.stdout + run.stderr
    assert "pip-audit could NOT check the dependencies" in run.stdout
    assert "pypi: checked none of 2 packages" in run.stdout
    assert "osv: pip-audit failed (exit 1): ConnectionError: Failed to resolve 'api.osv.dev'" in run.stdout
    assert "no known vulnerability" not in run.stdout


def test_osv_is_asked_when_pypi_knows_nothing(tmp_path: Path) -> None:
    vuln = {"id": "PYSEC-1", "fix_versions": [], "aliases": [], "description": ""}
    run = audit(tmp_path, {"pypi": {"dependencies": [not_found("orjson")]},
                           "osv": {"dependencies": [{"name": "orjson", "version": "1.0", "vulns": [vuln]}]}})
    assert run.returncode == 1, run.stdout + run.stderr
    assert "pip-audit (osv): known vulnerabilities" in run.stdout and "no fixed version yet" in run.stdout
