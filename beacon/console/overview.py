"""The overview's facts: which processes answer their health check, lag per group and partition,
and the records waiting on the dead-letter topic."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import httpx

from beacon import kafka
from beacon.config import Settings
from beacon.errors import KafkaError
from beacon.http_pool import trusting
from beacon.ops import stackfile
from beacon.ops.lag import PartitionLag, default_groups, group_lag


@cache
def _health_client(ca_file: Path | None) -> httpx.Client:
    """One client for every health check (thread-safe; no keep-alive, so a restarted process is asked on a new
    connection), trusting BEACON_API_CA_FILE's authorities when set: ``httpx.get()`` builds a client per call
    and loads the CA bundle each time (about 50 ms of CPU)."""
    trust = trusting(ca_file)
    return httpx.Client(timeout=2.0, limits=httpx.Limits(max_keepalive_connections=0),
                        verify=trust if trust is not None else True)


@dataclass(frozen=True)
class Health:
    """One process and what its health check answered."""

    name: str
    url: str
    pid: int | None
    healthy: bool
    detail: str


def health_targets(settings: Settings) -> tuple[dict[str, str], dict[str, int], bool]:
    """Process name -> health URL (and pids) from the running stack's card; without a card, the API and the
    WhatsApp gateway at their configured addresses. The flag says whether a card was found."""
    card = stackfile.read(settings)
    if card is not None and card.health_urls:
        return dict(card.health_urls), dict(card.processes), True
    return ({"api": f"{settings.api.url.rstrip('/')}/healthz",
             "gateway-whatsapp": f"http://127.0.0.1:{settings.whatsapp.gateway_port}/healthz"}, {}, False)


def _check(client: httpx.Client, name: str, url: str, pid: int | None) -> Health:
    try:
        r = client.get(url)
    except httpx.HTTPError as exc:
        return Health(name, url, pid, False, f"no answer: {type(exc).__name__}")
    return Health(name, url, pid, r.status_code == 200, f"HTTP {r.status_code}")


def health(settings: Settings) -> tuple[list[Health], bool]:
    """Every known process's health, checked concurrently (each within 2 s)."""
    urls, pids, from_card = health_targets(settings)
    with ThreadPoolExecutor(max_workers=max(1, len(urls))) as pool:
        client = _health_client(settings.api.ca_file)
        checks = list(pool.map(lambda item: _check(client, item[0], item[1], pids.get(item[0])), urls.items()))
    return checks, from_card


def lag(settings: Settings) -> tuple[list[PartitionLag], list[str]]:
    """Lag of Beacon's groups on their topics, and a line for each group it could not read."""
    rows: list[PartitionLag] = []
    problems: list[str] = []
    for group, topic in default_groups(settings):
        try:
            rows.extend(group_lag(settings, group, topic))
        except KafkaError as exc:
            problems.append(f"{group} on {topic}: {exc}")
    return rows, problems


def dead_letters_waiting(settings: Settings) -> int:
    """Records kept on the dead-letter topic (redriven ones stay there until retention removes them)."""
    topic = settings.topics.dlq
    parts = kafka.topic_partitions(settings, topic)
    low = kafka.list_topic_offsets(settings, topic, parts, "earliest")
    high = kafka.list_topic_offsets(settings, topic, parts, "latest")
    return sum(high[p] - low[p] for p in parts)
