"""The Grafana dashboard: well-formed, and every metric it queries is one Beacon's processes expose."""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry

DASHBOARD = Path(__file__).resolve().parents[2] / "ops" / "grafana" / "beacon-dashboard.json"
SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_sum", "_count"),
    "gauge": ("",),
    "summary": ("_sum", "_count", ""),
}


def _exposed(registry: CollectorRegistry) -> set[str]:
    names: set[str] = set()
    for family in registry.collect():
        if family.name.startswith("beacon_"):
            names.update(family.name + s for s in SUFFIXES.get(family.type, ("",)))
    return names


def _all_exposed() -> dict[str, set[str]]:
    # Importing these registers their metrics on the global registry.
    for module in ("beacon.api.metrics", "beacon.gateway.metrics"):
        importlib.import_module(module)
    from beacon.streams.metrics import WorkerMetrics

    shared = _exposed(REGISTRY)
    return {
        "gateway": {n for n in shared if n.startswith("beacon_gateway_")},
        "api": {n for n in shared if n.startswith("beacon_api_")},
        "worker": _exposed(WorkerMetrics().registry),
    }


def _targets(dashboard: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def test_dashboard_is_well_formed() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"] and dashboard["schemaVersion"] >= 36
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert {"h", "w", "x", "y"} <= set(panel["gridPos"]) and panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        if panel["type"] != "row":
            assert panel["targets"] and panel["datasource"]["uid"] == "${datasource}"
    for expr in _targets(dashboard):
        assert expr.count("(") == expr.count(")") and expr.count("{") == expr.count("}"), expr


def test_every_queried_metric_is_exposed_and_every_process_is_covered() -> None:
    exposed = _all_exposed()
    everything = set().union(*exposed.values())
    queried = {m for expr in _targets(json.loads(DASHBOARD.read_text())) for m in re.findall(r"\bbeacon_\w+", expr)}
    assert queried <= everything, sorted(queried - everything)
    for process, names in exposed.items():
        assert names & queried, f"no panel shows a metric of the {process}"
