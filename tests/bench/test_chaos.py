"""One slow test per fault of ``beacon bench chaos``: a short outage under ~20 msg/s through a whole stack
of the test's own (Kafka, registry, PostgreSQL, API, 2 workers, gateway, fake Cloud API on free ports),
shared by the tests of this module; faults that kill or stop a part start it again.

Each asserts the row's promise: every message offered was acknowledged and answered (0 lost), nothing
dead-lettered, per-user order kept, duplicate replies no more than the gateway reports it may have
repeated. The run behind each row ends only after the workers' and the gateway's groups committed
everything and the fake's record was read to its end, so "no duplicate" is observed, not assumed.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from beacon.bench.chaos.faults import FAULTS
from beacon.bench.chaos.run import Row, run_rows
from beacon.bench.chaos.stack import ChaosStack
from beacon.config import Settings
from tests.conftest import make_settings, unavailable

pytestmark = pytest.mark.slow

#: Length of every outage (a kill lasts as long as the restart takes).
OUTAGE = 8.0
RATE = 20.0
USERS = 20
@pytest.fixture(scope="module")
def chaos_stack() -> Iterator[ChaosStack]:
    from beacon.errors import BeaconError

    data = Path(tempfile.mkdtemp(prefix="beacon-chaos-test-"))
    stack = ChaosStack.create(make_settings(kafka_heap="384m"), data, database="postgres",
                              partitions=4, say=lambda _line: None)
    try:
        stack.start(say=lambda _line: None)
    except BeaconError as exc:
        stack.stop()
        unavailable(f"cannot start the chaos stack: {exc}")
    except BaseException:
        stack.stop()
        raise
    yield stack
    stack.stop()
    if not os.environ.get("BEACON_TEST_KEEP_CHAOS_DATA"):
        shutil.rmtree(data, ignore_errors=True)


async def run_fault(stack: ChaosStack, name: str) -> Row:
    [row] = await run_rows(stack, [FAULTS[name]], seconds=OUTAGE, hold=OUTAGE, rate=RATE, users=USERS, calm=1.5,
                           drain_timeout=30.0, baseline=False, say=lambda _line: None)
    assert not row.note.startswith("not run"), row.note
    return row


def assert_clean(row: Row) -> None:
    assert row.offered > 0 and row.acknowledged == row.offered, row
    assert row.lost == 0, row
    assert row.dead_lettered == 0, row
    assert row.order_violations == 0, row
    assert row.duplicates <= row.possible_duplicates, row


async def test_a_worker_killed_mid_work_loses_nothing(chaos_stack: ChaosStack) -> None:
    assert_clean(await run_fault(chaos_stack, "worker-sigkill"))


async def test_a_gateway_killed_mid_send_loses_nothing_and_repeats_only_what_it_reports(
        chaos_stack: ChaosStack) -> None:
    assert_clean(await run_fault(chaos_stack, "gateway-sigkill"))


async def test_an_api_outage_is_waited_out(chaos_stack: ChaosStack) -> None:
    assert_clean(await run_fault(chaos_stack, "api-down"))


async def test_a_postgres_restart_is_waited_out(chaos_stack: ChaosStack) -> None:
    assert_clean(await run_fault(chaos_stack, "postgres-restart"))


async def test_a_registry_outage_does_not_stop_the_flow(chaos_stack: ChaosStack) -> None:
    assert_clean(await run_fault(chaos_stack, "registry-down"))


async def test_a_broker_outage_loses_nothing_acknowledged(chaos_stack: ChaosStack) -> None:
    assert_clean(await run_fault(chaos_stack, "broker-down"))


async def test_a_cloud_api_outage_is_waited_out(chaos_stack: ChaosStack) -> None:
    assert_clean(await run_fault(chaos_stack, "cloud-api-503"))


def test_settings_fixture_is_isolated_from_the_shared_services(chaos_stack: ChaosStack) -> None:
    shared: Settings = make_settings()
    assert chaos_stack.settings.kafka_port != shared.kafka_port
    assert chaos_stack.settings.registry_port != shared.registry_port
