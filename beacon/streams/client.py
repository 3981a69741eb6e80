"""The worker's client of the API layer: ``POST /v1/messages/process`` and ``/process-batch``.

One bounded pool of keep-alive HTTP/1.1 connections (:mod:`beacon.http_pool`); each call carries the
service token (and, for one message, its id as idempotency key). Failures are classified: 4xx (except
408/425/429) are permanent and the message is dead-lettered at once; 5xx, 408, 425, 429, timeouts and
connection errors are retryable. Of those, connection errors before an answer began and 502/503/504 say
the API is *unreachable* (an outage, waited out by the worker's :mod:`~beacon.streams.health`); the
others (500, a timeout, an answer broken off) are an outage only if ``/readyz``
(:meth:`ApiClient.readiness`) says so too, else the message's own.

Batching (group commit): calls wait in a queue that up to ``BEACON_WORKER_API_BATCH_REQUESTS``
senders drain, each taking everything queued (up to ``BEACON_WORKER_API_BATCH`` messages) into one
request, whose answer streams each message's result as soon as it is done (a slow message holds
back nobody else). With light traffic a message leaves at once, alone; under load, messages that
arrive while requests are in flight share the next one, which saves most of the per-request HTTP
cost on both sides. The dispatcher keeps one message per user in flight, so a batch never holds two messages
of one user and per-user order is unaffected.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import Awaitable
from typing import Any

from pydantic import ValidationError

from beacon.config import Settings
from beacon.errors import BeaconError
from beacon.groups import MessageGroup
from beacon.http_pool import HttpError, HttpPool, trusting
from beacon.messages import BeaconMessage
from beacon.trace import TRACEPARENT, new_span_id, now_ms, parse_server_timing, traceparent

PROCESS_PATH = "/v1/messages/process"
BATCH_PATH = "/v1/messages/process-batch"
READY_PATH = "/readyz"
RETRYABLE_4XX = frozenset({408, 425, 429})
#: Answers that mean the API (or what stands before it) cannot serve anyone right now.
UNREACHABLE_STATUSES = frozenset({502, 503, 504})


class ApiError(BeaconError):
    """The API layer did not process a message; ``retryable`` says whether trying again may help."""

    def __init__(self, text: str, *, retryable: bool, status: int | None = None, unreachable: bool = False) -> None:
        super().__init__(text)
        self.retryable = retryable
        self.status = status
        #: The API could not be reached at all (connection refused or reset, 502/503/504): an outage.
        self.unreachable = unreachable or status in UNREACHABLE_STATUSES
        #: API calls made for the message so far (set by the processor's retry loop).
        self.attempts = 1


class ApiClient:
    """Calls the API's processing endpoint and returns the replies as BeaconMessages."""

    def __init__(self, settings: Settings) -> None:
        self._base_url = settings.api.url
        self._trust = trusting(settings.api.ca_file)
        self._url = settings.api.url.rstrip("/") + PROCESS_PATH
        self._token = settings.api.token.get_secret_value()
        self._auth_headers = {"Authorization": f"Bearer {self._token}", "Content-Type": "application/json"}
        self._timeout = settings.workers.api_timeout
        self._limit = settings.workers.api_connections or settings.workers.max_in_flight
        self._batch_url = settings.api.url.rstrip("/") + BATCH_PATH
        self._probe_timeout = settings.workers.api_probe_timeout
        self._batch_max = max(1, settings.workers.api_batch)
        # Enough batch requests for every message in flight, so a slow API (an LLM taking seconds) never
        # caps concurrency below BEACON_WORKER_MAX_IN_FLIGHT; a fast one rarely uses more than a few.
        self._senders_max = max(1, settings.workers.api_batch_requests,
                                -(-settings.workers.max_in_flight // self._batch_max))
        self._senders = 0
        self._queue: deque[tuple[BeaconMessage | MessageGroup, asyncio.Future[list[BeaconMessage]]]] = deque()
        self._pool: HttpPool | None = None
        #: Per message id answered: when its request left (epoch ms) and the API's own timing of it (ms by part,
        #: from ``Server-Timing`` or the batch line); the processor takes each with :meth:`timing_of`.
        self._timings: dict[str, tuple[float, dict[str, float]]] = {}
        #: Per message id in processing, the span id of the worker's hop: the parent named in the API request.
        self.parent_spans: dict[str, str] = {}

    def timing_of(self, message_id: str) -> tuple[float, dict[str, float]] | None:
        """When the answered request for ``message_id`` left and the API's timing of it (taken: asked once)."""
        return self._timings.pop(message_id, None)

    def _ensure_pool(self) -> HttpPool:
        if self._pool is None:
            self._pool = HttpPool(self._base_url, limit=self._limit, keepalive=30, ssl_context=self._trust)
        return self._pool

    async def process(self, msg: BeaconMessage | MessageGroup) -> list[BeaconMessage]:
        """Have the API process ``msg`` (or a user's coalesced group, answered as one turn); raises ApiError
        (retryable or not)."""
        if self._batch_max == 1:
            return await self.process_one(msg)
        future: asyncio.Future[list[BeaconMessage]] = asyncio.get_running_loop().create_future()
        self._queue.append((msg, future))
        if self._senders < self._senders_max:
            self._senders += 1
            asyncio.create_task(self._send_queued())  # noqa: RUF006  (it settles futures the callers await)
        return await future

    async def _send_queued(self) -> None:
        try:
            while self._queue:
                batch = [self._queue.popleft() for _ in range(min(len(self._queue), self._batch_max))]
                batch = [(msg, future) for msg, future in batch if not future.done()]  # cancelled callers
                if len(batch) == 1:
                    msg, future = batch[0]
                    await _settle_from(future, self.process_one(msg))
                elif batch:
                    await self._send_batch(batch)
        finally:
            self._senders -= 1

    async def _send_batch(
        self, batch: list[tuple[BeaconMessage | MessageGroup, asyncio.Future[list[BeaconMessage]]]]
    ) -> None:
        """One request for the batch; each message's result is settled as its line arrives (the API streams
        them as they are done), so a slow message holds back nobody else in the batch."""
        futures = [future for _, future in batch]
        # Each message's traceparent goes in the body: hundreds of them outgrow HTTP header limits (8 KB).
        body = b'{"messages":[%b],"traceparents":%b}' % (
            b",".join(msg.model_dump_json().encode() for msg, _ in batch),
            json.dumps([self._traceparent(msg) for msg, _ in batch]).encode())
        sent_ms = now_ms()
        try:
            async with (asyncio.timeout(self._timeout),
                        self._ensure_pool().request("POST", BATCH_PATH, self._auth_headers, body) as resp):
                if resp.status != 200:
                    detail = (await resp.read())[:300].decode("utf-8", "replace")
                    retryable = resp.status >= 500 or resp.status in RETRYABLE_4XX
                    raise ApiError(f"the API answered {resp.status} to a batch: {detail}", retryable=retryable,
                                   status=resp.status)
                async for line in resp.lines():
                    if line.strip():
                        item = json.loads(line)
                        if isinstance(timing := item.get("timing"), dict):
                            self._timings[batch[item["index"]][0].id] = (sent_ms, timing)
                        _settle_item(futures, item)
            unanswered = sum(1 for future in futures if not future.done())
            if unanswered:
                raise ApiError(f"the API's batch answer ended with {unanswered} of {len(batch)} messages unanswered",
                               retryable=True)
        except TimeoutError:
            error = ApiError(f"the API at {self._batch_url} did not answer within {self._timeout}s", retryable=True)
        except HttpError as exc:
            error = _http_failure(self._batch_url, exc)
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            error = ApiError(f"the API answered a batch with a line that is not a batch item: {exc}", retryable=True)
        except ApiError as exc:
            error = exc
        else:
            return
        for future in futures:
            if not future.done():
                future.set_exception(error)

    async def _post(self, body: bytes, headers: dict[str, str]) -> tuple[int, bytes, str | None]:
        """Status, body and ``Server-Timing`` of the answer to ``POST /v1/messages/process``."""
        headers.update(self._auth_headers)
        try:
            async with (asyncio.timeout(self._timeout),
                        self._ensure_pool().request("POST", PROCESS_PATH, headers, body) as resp):
                return resp.status, await resp.read(), resp.header("Server-Timing")
        except TimeoutError as exc:
            raise ApiError(f"the API at {self._url} did not answer within {self._timeout}s", retryable=True) from exc
        except HttpError as exc:
            raise _http_failure(self._url, exc) from exc

    async def process_one(self, msg: BeaconMessage | MessageGroup) -> list[BeaconMessage]:
        """``msg`` (or a group) alone through ``/v1/messages/process``; raises ApiError (retryable or not)."""
        if not msg.id.isprintable():
            raise ApiError(f"message id {msg.id!r} cannot be sent as the Idempotency-Key header (control characters)",
                           retryable=False)
        sent_ms = now_ms()
        status, body, timing = await self._post(msg.model_dump_json().encode(), {
            "Idempotency-Key": msg.id, TRACEPARENT: self._traceparent(msg)})
        if status == 200:
            try:
                data = json.loads(body)
                replies = [BeaconMessage.model_validate(r) for r in data.get("replies", [])]
                self._timings[msg.id] = (sent_ms, parse_server_timing(timing))
                return replies
            except (ValueError, AttributeError, ValidationError) as exc:
                raise ApiError(f"the API answered 200 with a body that is not a process result: {exc}",
                               retryable=True, status=status) from exc
        detail = body[:300].decode("utf-8", "replace")
        retryable = status >= 500 or status in RETRYABLE_4XX
        raise ApiError(f"the API answered {status}: {detail}", retryable=retryable, status=status)

    def _traceparent(self, msg: BeaconMessage | MessageGroup) -> str:
        """A group travels in the trace of its last message."""
        last = msg.last if isinstance(msg, MessageGroup) else msg
        return traceparent(last.trace_id, self.parent_spans.get(last.id) or new_span_id())

    async def readiness(self) -> str | None:
        """None when ``GET /readyz`` answers 200, else why the API is not ready (for the health probe)."""
        try:
            async with (asyncio.timeout(self._probe_timeout),
                        self._ensure_pool().request("GET", READY_PATH) as resp):
                body = await resp.read()
                if resp.status == 200:
                    return None
                return f"{READY_PATH} answered {resp.status}: {body[:200].decode('utf-8', 'replace')}"
        except TimeoutError:
            return f"{READY_PATH} did not answer within {self._probe_timeout}s"
        except HttpError as exc:
            return f"{READY_PATH}: {exc}"

    async def close(self) -> None:
        for _, future in self._queue:
            if not future.done():
                future.set_exception(ApiError("the worker is shutting down", retryable=True))
        self._queue.clear()
        if self._pool is not None:
            await self._pool.close()
            self._pool = None


def _http_failure(url: str, exc: HttpError) -> ApiError:
    """The ApiError of a request that got no complete answer: unreachable if none began."""
    if exc.unreachable:
        return ApiError(f"cannot reach the API at {url}: {exc}", retryable=True, unreachable=True)
    return ApiError(f"the API's answer at {url} broke off: {exc}", retryable=True)


def _settle_item(futures: list[asyncio.Future[list[BeaconMessage]]], item: dict[str, Any]) -> None:
    """Settle the future of one streamed batch item (by its index) with its replies or its error."""
    future = futures[item["index"]]
    if future.done():
        return
    try:
        future.set_result(_replies(item))
    except ApiError as exc:
        future.set_exception(exc)


def _replies(item: dict[str, object]) -> list[BeaconMessage]:
    """The replies in one result of a batch answer, or the ApiError the single endpoint would have caused."""
    status = item.get("status")
    if status == 200 and isinstance(item.get("result"), dict):
        result = item["result"]
        assert isinstance(result, dict)
        try:
            return [BeaconMessage.model_validate(r) for r in result.get("replies", [])]
        except (ValidationError, AttributeError) as exc:
            raise ApiError(f"the API answered 200 with a result that is not a process result: {exc}",
                           retryable=True, status=200) from exc
    code = status if isinstance(status, int) else 502
    retryable = code >= 500 or code in RETRYABLE_4XX
    raise ApiError(f"the API answered {code}: {str(item.get('detail'))[:300]}", retryable=retryable, status=code)


async def _settle_from(future: asyncio.Future[list[BeaconMessage]], call: Awaitable[list[BeaconMessage]]) -> None:
    try:
        result = await call
    except Exception as exc:  # ApiError, or a bug: either way the caller must hear of it, not wait forever
        if not future.done():
            future.set_exception(exc)
        return
    if not future.done():
        future.set_result(result)
