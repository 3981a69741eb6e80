"""Prometheus metrics of one worker, served at ``/metrics`` on its web port.

A registry per worker (not the global one) so tests and several apps in one process stay apart.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

#: Outcomes of a message: ``replied`` (API answered, replies acknowledged on bm_out; statuses too),
#: ``dead_lettered`` (to bm_dlq, with ``reason``: bad_message, rejected, exhausted, unexpected, replies_refused).
OUTCOMES = ("replied", "dead_lettered")


class WorkerMetrics:
    """The worker's counters, gauges and histograms."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.messages = Counter(
            "beacon_worker_messages", "Messages settled by this worker, by outcome and reason.",
            ["outcome", "reason"], registry=self.registry,
        )
        self.api_retries = Counter(
            "beacon_worker_api_retries", "API calls retried after a retryable failure.", registry=self.registry,
        )
        self.coalesced = Counter(
            "beacon_worker_coalesced_messages",
            "Messages answered as part of a coalesced group (BEACON_COALESCE_WINDOW_MS): one API call and one answer "
            "per group.", registry=self.registry,
        )
        self.turns = Counter(
            "beacon_worker_coalesced_turns", "Coalesced groups sent to the API as one turn.", registry=self.registry,
        )
        self.replies = Counter(
            "beacon_worker_replies", "Replies produced to bm_out and acknowledged.", registry=self.registry,
        )
        self.latency = Histogram(
            "beacon_worker_processing_seconds",
            "Seconds from a message entering the worker's dispatcher to its settlement (API call, replies acked).",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "beacon_worker_in_flight", "Messages being processed (or queued behind their user) right now.",
            registry=self.registry,
        )
        self.lag = Gauge(
            "beacon_worker_lag", "Messages of a partition not yet finished: high watermark minus the lowest "
            "unfinished offset.", ["topic", "partition"], registry=self.registry,
        )
        self.assigned = Gauge(
            "beacon_worker_assigned_partitions", "Partitions of bm_in assigned to this worker.",
            registry=self.registry,
        )
        self.dependency_up = Gauge(
            "beacon_worker_dependency_up", "1 while a dependency of the worker (api; registry, kafka) answers, 0 while "
            "it is down and the work that needs it waits.", ["dependency"], registry=self.registry,
        )
        self.dependency_down_seconds = Gauge(
            "beacon_worker_dependency_down_seconds", "Seconds the dependency has been down (0 while it is up).",
            ["dependency"], registry=self.registry,
        )
        self.dependency_outages = Counter(
            "beacon_worker_dependency_outages", "Times the dependency went down (fetching paused until it returned).",
            ["dependency"], registry=self.registry,
        )
