"""Deployment files that cannot run here, checked against their specifications.

- docker-compose.kafka.yml against the Compose specification's JSON schema (vendored in
  tests/ops/schemas/, see its README for where it comes from), with pinned image tags;
- ops/k8s/ manifests against Kubernetes' schemas (kubernetes-validate, strict: unknown fields are
  errors) and the KEDA ScaledObject against a schema of KEDA's CRD (vendored, strict);
- every BEACON_* variable they (and the Dockerfile) set is a real setting.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from beacon.config import Settings

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = Path(__file__).resolve().parent / "schemas"
K8S = ROOT / "ops" / "k8s"
KUBERNETES_VERSION = "1.33.0"
SETTINGS = {f"BEACON_{name.upper()}" for name in Settings.flat_fields()}

#: Parameters of KEDA's Kafka scaler (keda.sh/docs/scalers/apache-kafka); trigger metadata is a free map in the CRD.
KAFKA_SCALER_KEYS = {
    "bootstrapServers", "bootstrapServersFromEnv", "consumerGroup", "consumerGroupFromEnv", "topic", "topicFromEnv",
    "lagThreshold", "activationLagThreshold", "offsetResetPolicy", "allowIdleConsumers", "excludePersistentLag",
    "scaleToZeroOnInvalidOffset", "limitToPartitionsWithLag", "ensureEvenDistributionOfPartitions",
    "partitionLimitation", "version", "sasl", "tls", "unsafeSsl",
}


def _compose() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "docker-compose.kafka.yml").read_text())
    assert isinstance(data, dict)
    return data


def _manifests() -> list[tuple[str, dict[str, Any]]]:
    docs: list[tuple[str, dict[str, Any]]] = []
    for path in sorted(K8S.glob("*.yaml")):
        docs.extend((path.name, doc) for doc in yaml.safe_load_all(path.read_text()) if doc)
    return docs


def _compose_validator() -> jsonschema.protocols.Validator:
    schema = json.loads((SCHEMAS / "compose-spec.json").read_text())
    jsonschema.Draft201909Validator.check_schema(schema)
    return jsonschema.Draft201909Validator(schema)


def _keda_validator() -> jsonschema.protocols.Validator:
    schema = json.loads((SCHEMAS / "keda-scaledobject-v1alpha1.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


# --- Compose ----------------------------------------------------------------------------------


def test_compose_file_follows_the_compose_specification() -> None:
    errors = [f"{e.json_path}: {e.message}" for e in _compose_validator().iter_errors(_compose())]
    assert not errors, errors


def test_compose_schema_rejects_a_mistake() -> None:
    broken = _compose()
    broken["services"]["worker"]["deploy"]["replica"] = 2
    assert list(_compose_validator().iter_errors(broken))


def test_compose_has_the_promised_services_with_pinned_images() -> None:
    services = _compose()["services"]
    assert {"kafka", "registry", "kafka-ui", "api", "worker", "gateway-whatsapp"} <= set(services)
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["kafka-ui"]["image"].startswith("kafbat/kafka-ui:")
    assert services["worker"]["deploy"]["replicas"] >= 2
    for name, svc in services.items():
        image = svc.get("image", "")
        assert re.fullmatch(r"[\w./-]+:[\w.-]+", image) and not image.endswith(":latest"), (name, image)
        if svc.get("build"):
            assert svc["build"]["dockerfile"] == "Dockerfile" and (ROOT / "Dockerfile").exists()
    ui = services["kafka-ui"]["environment"]
    assert ui["KAFKA_CLUSTERS_0_BOOTSTRAPSERVERS"].startswith("kafka:")
    assert ui["KAFKA_CLUSTERS_0_SCHEMAREGISTRY"].startswith("http://registry:")


def test_every_beacon_variable_in_compose_and_dockerfile_is_a_setting() -> None:
    used: set[str] = set()
    for svc in _compose()["services"].values():
        env = svc.get("environment") or {}
        names = env.keys() if isinstance(env, dict) else [item.split("=", 1)[0] for item in env]
        used.update(n for n in names if n.startswith("BEACON_"))
    used.update(re.findall(r"\b(BEACON_[A-Z0-9_]+)=", (ROOT / "Dockerfile").read_text()))
    assert len(used) > 10
    assert used <= SETTINGS, sorted(used - SETTINGS)


# --- Kubernetes and KEDA ----------------------------------------------------------------------


@pytest.mark.parametrize("name, doc", [(n, d) for n, d in _manifests() if d["kind"] not in {"ScaledObject",
                                                                                              "Kustomization"}],
                         ids=lambda v: v if isinstance(v, str) else v.get("kind", "?"))
def test_kubernetes_manifest_is_valid(name: str, doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_kubernetes_validation_rejects_a_mistake() -> None:
    deployment = next(d for _, d in _manifests() if d["kind"] == "Deployment")
    deployment["spec"]["replica"] = 3
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def test_keda_scaled_object_is_valid_and_scales_the_workers_on_their_lag() -> None:
    [scaled] = [d for _, d in _manifests() if d["kind"] == "ScaledObject"]
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    errors = [f"{e.json_path}: {e.message}" for e in _keda_validator().iter_errors(scaled)]
    assert not errors, errors

    spec = scaled["spec"]
    deployments = {d["metadata"]["name"]: d for _, d in _manifests() if d["kind"] == "Deployment"}
    worker = deployments[spec["scaleTargetRef"]["name"]]
    assert worker["spec"]["template"]["spec"]["containers"][0]["args"][0] == "worker"
    assert spec["minReplicaCount"] == 0  # to zero when idle
    config = next(d for _, d in _manifests() if d["kind"] == "ConfigMap")["data"]
    assert spec["maxReplicaCount"] <= int(config["BEACON_TOPIC_PARTITIONS"])
    [trigger] = spec["triggers"]
    assert trigger["type"] == "kafka"
    meta = trigger["metadata"]
    assert set(meta) <= KAFKA_SCALER_KEYS, set(meta) - KAFKA_SCALER_KEYS
    assert meta["consumerGroup"] == config.get("BEACON_WORKER_GROUP", Settings.flat_fields()["worker_group"].default)
    assert meta["topic"] == Settings.flat_fields()["topic_in"].default
    assert meta["bootstrapServers"] == config["BEACON_KAFKA_BOOTSTRAP"]


def test_keda_schema_rejects_a_mistake() -> None:
    [scaled] = [d for _, d in _manifests() if d["kind"] == "ScaledObject"]
    scaled["spec"]["minReplicas"] = 0
    assert list(_keda_validator().iter_errors(scaled))


def test_every_beacon_variable_in_the_manifests_is_a_setting() -> None:
    used: set[str] = set()
    for _, doc in _manifests():
        if doc["kind"] in {"ConfigMap", "Secret"}:
            used.update(doc.get("data", {}) | doc.get("stringData", {}))
        if doc["kind"] == "Deployment":
            pod = doc["spec"]["template"]["spec"]
            for c in pod["containers"] + pod.get("initContainers", []):
                used.update(e["name"] for e in c.get("env", []))
    assert len(used) > 10
    assert used <= SETTINGS, sorted(used - SETTINGS)


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == files
