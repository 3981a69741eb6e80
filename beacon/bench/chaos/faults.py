"""The faults the chaos bench injects: what each does to its stack, how long, and what its row proves.

Each ``inject`` blocks (the bench runs it in a thread while the load goes on) from the moment the fault
starts until the broken part answers again, and returns that window. Outage lengths are a share of the
bench's ``--seconds``; a kill lasts as long as the restart takes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from beacon.bench.chaos.stack import ChaosStack, cluster_op, wait_until
from beacon.errors import ServiceError
from beacon.ops import kafka_local, registry_local

#: Cloud API error code the fake answers during the outage: 131016 "Service unavailable", HTTP 503.
CLOUD_API_UNAVAILABLE = 131016


@dataclass(frozen=True)
class Window:
    """When a fault started and when the broken part answered again (wall clock, like the load's times)."""

    injected_at: float
    restored_at: float
    note: str = ""

    @property
    def seconds(self) -> float:
        return self.restored_at - self.injected_at


@dataclass(frozen=True)
class Fault:
    """A named fault: ``share`` of ``--seconds`` it lasts (0: a kill), how to inject it, what its row proves."""

    name: str
    share: float
    inject: Callable[[ChaosStack, float], Window]
    proves: str
    needs: str | None = None


def _kill(name: str) -> Callable[[ChaosStack, float], Window]:
    def inject(stack: ChaosStack, _hold: float) -> Window:
        began = time.time()
        pid = stack.kill(name)
        wait_until(lambda: stack.restarted(name, pid), f"{name} to be restarted after SIGKILL", 180)
        return Window(began, time.time(), f"pid {pid} SIGKILLed, restarted by the supervisor")

    return inject


def _api_down(stack: ChaosStack, hold: float) -> Window:
    began = time.time()
    stack.take_down("api")
    time.sleep(hold)
    stack.bring_up("api")
    wait_until(lambda: stack.listening("api"), "the API layer to listen again", 120)
    return Window(began, time.time(), "SIGTERM, kept down, started again")


def _postgres_restart(stack: ChaosStack, hold: float) -> Window:
    if stack.postgres is None:
        raise ServiceError("the PostgreSQL restart needs the stack on PostgreSQL (--database postgres)")
    began = time.time()
    stack.postgres.stop()
    time.sleep(hold)
    stack.postgres.start()
    return Window(began, time.time(), "fast shutdown (connections cut), started again")


def _registry_down(stack: ChaosStack, hold: float) -> Window:
    began = time.time()
    registry_local.stop(stack.settings)
    time.sleep(hold)
    registry_local.start(stack.settings)
    return Window(began, time.time(), "stopped, started again (schemas kept)")


def _broker_down(stack: ChaosStack, hold: float) -> Window:
    began = time.time()
    kafka_local.stop(stack.settings)
    time.sleep(hold)
    kafka_local.start(stack.settings)
    return Window(began, time.time(), "the only broker stopped, started again (data kept)")


def _cloud_api_unavailable(stack: ChaosStack, hold: float) -> Window:
    fake = f"http://127.0.0.1:{stack.settings.local.fake_whatsapp_port}"
    began = time.time()
    httpx.post(f"{fake}/_fake/faults", json={"code": CLOUD_API_UNAVAILABLE}, timeout=10).raise_for_status()
    time.sleep(hold)
    httpx.delete(f"{fake}/_fake/faults", timeout=10).raise_for_status()
    return Window(began, time.time(), f"every send answered 503 (code {CLOUD_API_UNAVAILABLE})")


def _leader_kill(stack: ChaosStack, hold: float) -> Window:
    s = stack.settings
    if stack.brokers < 3:
        raise ServiceError("the leader broker SIGKILL needs the stack on a 3-broker cluster")
    leaders: dict[int, list[int]] = cluster_op("leaders")(s, s.topics.inbound)
    node = max((n for n in leaders if n >= 0), key=lambda n: len(leaders[n]))
    began = time.time()
    cluster_op("kill_node")(s, node)
    time.sleep(hold)
    cluster_op("start_node")(s, node)
    return Window(began, time.time(), f"node {node}, leader of {len(leaders[node])} of {s.topics.partitions} "
                  f"{s.topics.inbound} partitions, SIGKILLed; started again after {hold:.0f}s")


FAULTS: dict[str, Fault] = {f.name: f for f in (
    Fault("worker-sigkill", 0.0, _kill("worker-1"),
          "a worker dying mid-work loses nothing: uncommitted messages are processed again by the group, "
          "replies keep their ids, so the gateway sends each once"),
    Fault("gateway-sigkill", 0.0, _kill("gateway-whatsapp"),
          "a gateway dying mid-send loses nothing and re-sends only what the Cloud API may have taken in the "
          "instant of the kill (counted as possible duplicates)"),
    Fault("api-down", 1.0, _api_down,
          "workers wait out an API outage (a deploy) instead of dead-lettering, and catch up after"),
    Fault("postgres-restart", 1 / 6, _postgres_restart,
          "the API answers 503 while its database is away, workers wait, the pool reconnects on its own",
          needs="postgres"),
    Fault("registry-down", 0.5, _registry_down,
          "schemas already known are cached: messages keep flowing without the registry"),
    Fault("broker-down", 0.5, _broker_down,
          "with the only broker away, webhooks are refused (503, redelivered) and nothing acknowledged is lost"),
    Fault("leader-sigkill", 0.5, _leader_kill,
          "with three brokers, killing the leader of most bm_in partitions loses nothing acknowledged "
          "(acks=all, min.insync.replicas=2) and the clients ride through the election", needs="cluster"),
    Fault("cloud-api-503", 1.0, _cloud_api_unavailable,
          "the gateway waits out a Cloud API outage per number: nothing dead-lettered, nothing sent twice"),
)}
