"""What the schema registry holds for Beacon's subjects, read over its Confluent-compatible REST API:
each subject's versions with their schema ids, and the compatibility level."""

from __future__ import annotations

from dataclasses import dataclass, field

import httpx

from beacon.codec import registry_http_options, subject_for
from beacon.config import Settings
from beacon.errors import RegistryUnavailableError


@dataclass(frozen=True)
class Version:
    version: int
    schema_id: int


@dataclass
class Subject:
    name: str
    compatibility: str | None
    versions: list[Version] = field(default_factory=list)
    problem: str | None = None


def _get(client: httpx.Client, url: str) -> httpx.Response:
    try:
        return client.get(url)
    except httpx.HTTPError as exc:
        raise RegistryUnavailableError(f"schema registry at {url} did not answer: {exc}") from exc


def subjects(settings: Settings) -> list[Subject]:
    """The BeaconMessage subjects of bm_in and bm_out (and any other ``*-value`` subject of Beacon's topics)."""
    base = settings.registry.url.rstrip("/")
    names = [subject_for(t) for t in (settings.topics.inbound, settings.topics.outbound, settings.topics.dlq)]
    out: list[Subject] = []
    with httpx.Client(timeout=5.0, headers={"Accept": "application/json"}, **registry_http_options(settings)) as client:
        default_level = None
        r = _get(client, f"{base}/config")
        if r.status_code == 200:
            default_level = r.json().get("compatibilityLevel")
        for name in names:
            r = _get(client, f"{base}/config/{name}")
            level = r.json().get("compatibilityLevel") if r.status_code == 200 else None
            subject = Subject(name, level or (f"{default_level} (registry default)" if default_level else None))
            r = _get(client, f"{base}/subjects/{name}/versions")
            if r.status_code == 404:
                subject.problem = "not registered"
                if name != subject_for(settings.topics.dlq):
                    out.append(subject)
                continue
            r.raise_for_status()
            for number in r.json():
                v = _get(client, f"{base}/subjects/{name}/versions/{number}").json()
                subject.versions.append(Version(int(v.get("version", number)), int(v.get("id", -1))))
            out.append(subject)
    return out


def versions_by_id(found: list[Subject]) -> dict[int, list[str]]:
    """Schema id -> ``<subject> v<version>`` names, to label decoded records."""
    by_id: dict[int, list[str]] = {}
    for s in found:
        for v in s.versions:
            by_id.setdefault(v.schema_id, []).append(f"{s.name} v{v.version}")
    return by_id
