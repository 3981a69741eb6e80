"""The whole stack against a broker of its own with a SASL_SSL listener and a SCRAM-SHA-512 user (a CA
and broker certificate made for the test): the right credentials carry `/ping` from the gateway through
bm_in, a Faust worker, the API and bm_out back to the fake Cloud API; wrong ones stop the operations
commands and a worker at once with the listener and mechanism named; no process logs the password."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from beacon.codec import MessageCodec
from beacon.config import Settings
from beacon.errors import BeaconError, KafkaAuthenticationError
from beacon.kafka import AsyncProducer, ensure_topics
from beacon.ops import kafka_local, kafka_tls
from beacon.ops.process import free_port, port_open
from beacon.ops.supervisor import Supervisor
from tests.conftest import unavailable
from tests.ops.stack import Stack, wait_for

pytestmark = pytest.mark.slow

PASSWORD = "Ph0enix-s3cret-4b7q"
WRONG = "wr0ng-guess-9x2z"


def _security_env(settings: Settings, password: str) -> dict[str, str]:
    return {
        "BEACON_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "BEACON_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "BEACON_KAFKA_SASL_USERNAME": "beacon",
        "BEACON_KAFKA_SASL_PASSWORD": password,
        "BEACON_KAFKA_SSL_CA_FILE": str(kafka_tls.ca_file(settings)),
    }


@pytest.fixture(scope="module")
def secure_broker(registry_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """A SASL_SSL broker only these tests use, on free ports with its own data dir."""
    data = tmp_path_factory.mktemp("secure") / "broker"
    settings = registry_settings.replace(
        data_dir=data,
        kafka_bootstrap=f"127.0.0.1:{free_port()}",
        kafka_controller_port=free_port(),
        kafka_heap="256m",
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="beacon",
        kafka_sasl_password=SecretStr(PASSWORD),
    )
    settings = settings.replace(kafka_ssl_ca_file=kafka_tls.ca_file(settings))
    try:
        kafka_local.start(settings)
    except BeaconError as exc:
        kafka_local.stop(settings)
        unavailable(f"cannot start a SASL_SSL broker: {exc}")
    yield settings
    kafka_local.stop(settings)


def test_wrong_credentials_fail_fast_naming_listener_and_mechanism(
    secure_broker: Settings, unique: Callable[[str], str], tmp_path: Path
) -> None:
    stack = Stack.create(secure_broker, unique, tmp_path / "wrong")
    env = {**stack.env, **_security_env(secure_broker, WRONG), "BEACON_WHATSAPP_APP_SECRET": "test-secret"}
    commands = (["topics", "ensure"], ["worker", "--web-port", str(free_port())], ["gateway", "whatsapp"])
    runs = [subprocess.Popen([sys.executable, "-m", "beacon", *argv], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True) for argv in commands]
    for run in runs:
        output, _ = run.communicate(timeout=60)
        assert run.returncode != 0, output
        assert f"SASL_SSL (SCRAM-SHA-512, user beacon) at {secure_broker.kafka.bootstrap}" in output, output
        assert "Authentication failed" in output or "authentication" in output.lower(), output
        assert WRONG not in output


def test_a_producer_whose_credentials_are_refused_fails_every_send_at_once(secure_broker: Settings) -> None:
    wrong = secure_broker.replace(kafka_sasl_password=SecretStr(WRONG))

    async def produce() -> None:
        producer = AsyncProducer(wrong)
        try:
            with pytest.raises(KafkaAuthenticationError, match="SASL_SSL \\(SCRAM-SHA-512, user beacon\\)"):
                await producer.produce("anything", b"1")
            # Known refused now: the next send fails before reaching the broker, not after a timeout.
            future = producer.produce_nowait("anything", b"2")
            assert future.done() and isinstance(future.exception(), KafkaAuthenticationError)
        finally:
            producer.close(timeout=0)

    asyncio.run(produce())


def test_the_stack_answers_ping_over_sasl_ssl_and_logs_no_secret(
    secure_broker: Settings, unique: Callable[[str], str], tmp_path: Path
) -> None:
    stack = Stack.create(secure_broker, unique, tmp_path / "stack")
    stack.env.update(_security_env(secure_broker, PASSWORD))
    s = stack.settings
    ensure_topics(s)
    MessageCodec(s).prepare([s.topics.inbound, s.topics.outbound])
    migrated = stack.beacon("api", "migrate")
    assert migrated.returncode == 0, migrated.stderr
    logs = tmp_path / "stack" / "logs"
    sup = Supervisor(logs, report=print)
    wanted = {"api", "worker-1", "fake-whatsapp", "gateway-whatsapp"}
    try:
        for spec in stack.specs():
            if spec.name in wanted:
                sup.add(spec)
        wait_for(lambda: all(port_open("127.0.0.1", p) for p in (s.api.port, s.whatsapp.gateway_port,
                                                                  s.local.fake_whatsapp_port)),
                 "the API, gateway and fake to listen", step=sup.poll)
        with httpx.Client(timeout=30) as client:
            stack.say(client, "447700900123", "/ping")
            wait_for(lambda: len(stack.sent(client)) >= 1, "the reply to reach the fake Cloud API", step=sup.poll)
            assert [i["body"]["text"]["body"] for i in stack.sent(client)] == ["pong"]
    finally:
        sup.stop()
    written = {p.name: p.read_text(errors="replace") for p in logs.glob("*.log")}
    assert len(written) == len(wanted) and all(written.values())
    broker_log = secure_broker.log_dir / "kafka.log"
    written[broker_log.name] = broker_log.read_text(errors="replace")
    assert "SASL_SSL" in written["kafka.log"]
    assert [name for name, text in written.items() if PASSWORD in text] == []
