"""OpenTelemetry through real processes: with BEACON_OTEL_ENDPOINT set, one ``/ping`` yields spans from the
gateway, the worker and the API, exported over OTLP/HTTP to a receiver in the test, in one trace and
parented hop by hop. Unset, no process imports OpenTelemetry at all."""

from __future__ import annotations

import gzip
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from beacon.codec import MessageCodec
from beacon.config import Settings
from beacon.kafka import ensure_topics
from beacon.ops.process import port_open
from beacon.ops.supervisor import Supervisor
from tests.ops.stack import Stack, wait_for


@dataclass(frozen=True)
class ReceivedSpan:
    service: str
    name: str
    trace_id: str
    span_id: str
    parent_id: str


class Receiver:
    """A bare OTLP/HTTP trace receiver: decodes each protobuf export into ReceivedSpans."""

    def __init__(self) -> None:
        self.spans: list[ReceivedSpan] = []
        spans = self.spans

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                export = ExportTraceServiceRequest()
                export.ParseFromString(body)
                for rs in export.resource_spans:
                    service = next((a.value.string_value for a in rs.resource.attributes if a.key == "service.name"),
                                   "")
                    for ss in rs.scope_spans:
                        for s in ss.spans:
                            spans.append(ReceivedSpan(service, s.name, s.trace_id.hex(), s.span_id.hex(),
                                                      s.parent_span_id.hex()))
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


@pytest.mark.slow
def test_one_ping_gives_gateway_worker_and_api_spans_in_one_trace_parented_hop_by_hop(
    registry_settings: Settings, unique: Callable[[str], str], tmp_path: Path, receiver: Receiver
) -> None:
    stack = Stack.create(registry_settings, unique, tmp_path, workers=1)
    stack.env.update({"BEACON_OTEL_ENDPOINT": receiver.url, "OTEL_BSP_SCHEDULE_DELAY": "100"})
    s = stack.settings
    ensure_topics(s)
    MessageCodec(s).prepare([s.topics.inbound, s.topics.outbound])
    migrated = stack.beacon("api", "migrate")
    assert migrated.returncode == 0, migrated.stderr
    sup = Supervisor(tmp_path / "logs", report=print)
    names = {"webhook": "whatsapp webhook", "worker": "worker process", "api": "api process",
             "send": "whatsapp send"}

    def by_name() -> dict[str, ReceivedSpan]:
        return {span.name: span for span in list(receiver.spans)}

    try:
        for spec in stack.specs():
            if spec.name in ("api", "worker-1", "fake-whatsapp", "gateway-whatsapp"):
                sup.add(spec)
        ports = (s.api.port, s.whatsapp.gateway_port, s.local.fake_whatsapp_port)
        wait_for(lambda: all(port_open("127.0.0.1", p) for p in ports), "the API, gateway and fake to listen",
                 step=sup.poll, timeout=90)
        with httpx.Client(timeout=30) as client:
            stack.say(client, "447700900123", "/ping")
            wait_for(lambda: len(stack.sent(client)) >= 1, "the reply at the fake", step=sup.poll)
        wait_for(lambda: set(names.values()) <= set(by_name()), "every hop's span at the receiver", step=sup.poll)
    finally:
        sup.stop()
    spans = by_name()
    webhook, worker, api, send = (spans[names[k]] for k in ("webhook", "worker", "api", "send"))
    assert (webhook.service, worker.service, api.service, send.service) == (
        "gateway-whatsapp", "worker", "api", "gateway-whatsapp")
    assert len({webhook.trace_id, worker.trace_id, api.trace_id, send.trace_id}) == 1
    assert webhook.parent_id == ""  # the root: the webhook that brought the message
    assert worker.parent_id == webhook.span_id
    assert api.parent_id == worker.span_id
    assert send.parent_id == worker.span_id  # the reply the worker produced is what the gateway sends


def test_without_an_endpoint_no_span_machinery_is_loaded(tmp_path: Path) -> None:
    """Gateway and worker import nothing of OpenTelemetry; the API only what FastAPI itself imports when the
    API package is installed (``fastapi.telemetry``), never the SDK or an exporter."""
    code = """
import sys
from beacon import otel
from beacon.config import Settings
from beacon.gateway.inbound import Inbound
from beacon.gateway.outbound import Outbound
from beacon.gateway.service import Gateway
from beacon.streams.app import create_app as worker_app
from beacon.streams.processor import MessageProcessor
settings = Settings()
assert settings.otel_endpoint is None
assert otel.setup(settings, "worker") is False
worker_app(settings)
assert otel.start("worker process", "0" * 31 + "1") is None
loaded = sorted(m for m in sys.modules if m.startswith("opentelemetry"))
assert not loaded, loaded
from beacon.api.app import create_app
create_app(settings)
assert not otel.enabled()
loaded = sorted(m for m in sys.modules if m.startswith(("opentelemetry.sdk", "opentelemetry.exporter")))
assert not loaded, loaded
print("ok")
"""
    env = {"PATH": "/usr/bin:/bin", "BEACON_DATA_DIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60,
                          cwd=tmp_path)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stdout + done.stderr
