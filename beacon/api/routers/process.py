"""``POST /v1/messages/process``: the endpoint workers call for every inbound message and status."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Header, HTTPException, Request, Response, status
from fastapi.responses import StreamingResponse
from pydantic import ValidationError

from beacon import otel
from beacon.api import metrics, store
from beacon.api.deps import Authorized, StateDep
from beacon.api.failures import Rejected, detail_of, status_of, what_next
from beacon.api.handoff import refresh_waiting
from beacon.api.outage import DATABASE_UNAVAILABLE
from beacon.api.pipeline import Turn, run_pipeline
from beacon.api.schemas import BatchItem, BatchRequest, ProcessResult, problems
from beacon.api.window import Refusal, apply_window
from beacon.api.wire import message_problems
from beacon.api.writer import Lookup, StatusJob
from beacon.bot.persist import load_user_and_state, state_json_if_changed
from beacon.errors import BeaconError, GroupConflictError
from beacon.groups import MessageGroup, group_id
from beacon.messages import INBOUND, STATUS, BeaconMessage, utcnow
from beacon.trace import TRACEPARENT, parse_traceparent, server_timing

log = logging.getLogger(__name__)
router = APIRouter(tags=["processing"])
NDJSON = "application/x-ndjson"
PROCESS_PATH = "/v1/messages/process"
BATCH_PATH = "/v1/messages/process-batch"

#: The schema of one NDJSON line, its models referenced in the document's components (see
#: ``beacon.api.app.contract``, which adds those the routes do not already declare).
BATCH_LINE_SCHEMA = BatchItem.model_json_schema(ref_template="#/components/schemas/{model}")
BATCH_LINE_MODELS = BATCH_LINE_SCHEMA.pop("$defs", {})

def _result(message_id: str, duplicate: bool, replies_json: bytes, refused: list[Refusal] = ()) -> bytes:  # type: ignore[assignment]
    return b'{"message_id":%b,"duplicate":%b,"replies":%b,"refused":%b}' % (
        orjson.dumps(message_id),
        b"true" if duplicate else b"false",
        replies_json,
        orjson.dumps([{"message_id": r.message_id, "reason": r.reason} for r in refused]),
    )


@router.post(
    PROCESS_PATH,
    response_model=ProcessResult,
    dependencies=[Authorized],
    summary="Process one inbound message or delivery status; idempotent on the message id.",
    responses=problems(
        400,
        401,
        413,
        422,
        500,
        503,
        c422="Not a valid inbound BeaconMessage or status, one the topics or the database cannot carry (a value "
        "too long, an int past 32 bits, a lone surrogate, a NUL), an Idempotency-Key other than the message "
        "id, or a message the pipeline refuses (permanent: dead-letter it).",
        c500="The pipeline failed on this message (the detail says how; an external hook answering something "
        "that is not replies): retry it a few times, then dead-letter it.",
        c503="A dependency is unavailable (the database, or the external hook unreachable, busy or refusing the "
        "API's credentials): wait it out, retry after Retry-After seconds.",
    ),
)
async def process_message(
    msg: BeaconMessage | MessageGroup,
    state: StateDep,
    request: Request,
    idempotency_key: Annotated[
        str | None,
        Header(description="Must equal the message's `id` when sent (422 otherwise): the id is the idempotency key."),
    ] = None,
) -> Response:
    """The first call runs the pipeline and stores the message and its replies; a repeat returns the
    stored replies (same ids) without running the pipeline again. A ``MessageGroup`` (one user's rapid
    messages, coalesced by the worker) is answered once, as one turn; its id (the Idempotency-Key) derives
    from its messages' ids."""
    if idempotency_key is not None and idempotency_key != msg.id:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_ENTITY,
            detail=f"Idempotency-Key {idempotency_key!r} differs from the message id {msg.id!r}; send the message id",
        )
    timing: Timing = {}
    try:
        body = await traced(state, msg, timing, request.headers.get(TRACEPARENT))
    except Rejected as exc:
        raise HTTPException(exc.status_code, detail=exc.detail) from exc
    return Response(content=body, media_type="application/json",
                    headers={"Server-Timing": server_timing(list(timing.items()))})


@router.post(
    BATCH_PATH,
    dependencies=[Authorized],
    summary="Process several inbound messages or statuses of different users in one request.",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "NDJSON: one BatchItem per line, each as soon as its message is done (any order).",
            "content": {NDJSON: {"schema": BATCH_LINE_SCHEMA}},
        },
        **problems(400, 401, 413, 422, c422="The body is not a batch of BeaconMessages (each item is checked "
                   "further on its own, answered in its line)."),
    },
)
async def process_batch(batch: BatchRequest, state: StateDep) -> StreamingResponse:
    """Each message is processed exactly as by ``/v1/messages/process`` (idempotent on its id), and
    its result is streamed as one line the moment it is done, with its ``index`` in the request and
    the status the single endpoint would have answered (200, 422, 503): one bad message fails alone
    and one slow message (an LLM taking seconds) holds back nobody else's replies. Messages of one
    user must not share a batch: their order would not be kept (workers send one per user at a time)."""

    parents = batch.traceparents or []

    async def lines() -> AsyncIterator[bytes]:
        for done in asyncio.as_completed([batch_line(state, i, raw, parents) for i, raw in enumerate(batch.messages)]):
            yield await done

    return StreamingResponse(lines(), media_type=NDJSON)


async def batch_line(state: StateDep, index: int, raw: dict[str, Any], parents: list[str]) -> bytes:
    """The NDJSON line (BatchItem) answering item ``index`` of a batch, ``raw`` as the request carried it."""
    try:
        msg = MessageGroup.model_validate(raw) if "messages" in raw else BeaconMessage.model_validate(raw)
    except ValidationError as exc:
        detail = f"item {index} is not a BeaconMessage or MessageGroup: {_errors(exc)}"
        return b'{"index":%d,"status":422,"detail":%b}\n' % (index, orjson.dumps(_printable(detail)))
    parent = parents[index] if index < len(parents) else None
    return b'{"index":%d,%b\n' % (index, await _batch_item(state, msg, parent))


def _errors(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(part) for part in e['loc']) or 'item'}: {e['msg']}" for e in exc.errors()[:5])


def _printable(text: str) -> str:
    """``text`` as valid UTF-8 (a lone surrogate echoed from the input becomes an escape)."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


async def _batch_item(state: StateDep, msg: BeaconMessage | MessageGroup, parent: str | None) -> bytes:
    """The fields of one BatchItem after its index: status and result or detail, and the closing brace."""
    timing: Timing = {}
    try:
        result = await traced(state, msg, timing, parent)
        return b'"status":200,"result":%b,"timing":%b}' % (result, orjson.dumps(timing))
    except Rejected as exc:
        return b'"status":%d,"detail":%b}' % (exc.status_code, orjson.dumps(_printable(exc.detail)))
    except DATABASE_UNAVAILABLE as exc:
        state.outage.failed(f"message {msg.id[:80]!r} of a batch", exc)
        return b'"status":503,"detail":%b}' % orjson.dumps(f"database unavailable, retry: {type(exc).__name__}")
    except BeaconError as exc:
        code = status_of(exc)
        log.warning("message %s (user %s) of a batch not processed (answered %d: %s): %s: %s", msg.id, msg.user_key,
                    code, what_next(code), type(exc).__name__, exc)
        return b'"status":%d,"detail":%b}' % (code, orjson.dumps(_printable(detail_of(exc))))
    except Exception as exc:  # answered for this item alone, so the stream still carries the others
        log.exception("message %s (user %s) of a batch failed unexpectedly (answered 500)", msg.id, msg.user_key)
        return b'"status":500,"detail":%b}' % orjson.dumps(f"internal error: {type(exc).__name__}")


async def traced(state: StateDep, msg: BeaconMessage | MessageGroup, timing: Timing, parent: str | None) -> bytes:
    """:func:`process_one` (or :func:`process_group`) in a span (child of the worker's, from its ``traceparent``)
    when spans are on; a group's span is in the trace of its last message."""
    trace_id = msg.last.trace_id if isinstance(msg, MessageGroup) else msg.trace_id
    span = otel.start("api process", trace_id, parse_traceparent(parent), None, {"beacon.message_id": msg.id})
    if span is None:
        return await _process_either(state, msg, timing)
    try:
        return await _process_either(state, msg, timing)
    finally:
        span.end(None, {f"beacon.{part}_ms": ms for part, ms in timing.items()})


def _process_either(state: StateDep, msg: BeaconMessage | MessageGroup, timing: Timing) -> Awaitable[bytes]:
    return process_group(state, msg, timing) if isinstance(msg, MessageGroup) else process_one(state, msg, timing)


#: Milliseconds spent inside the API on one message, by part (``db``, ``pipeline``), as ``Server-Timing`` names them.
Timing = dict[str, float]


async def process_one(state: StateDep, msg: BeaconMessage, timing: Timing | None = None) -> bytes:
    """Process one message; the JSON of its ProcessResult. Raises Rejected for a permanent refusal. ``timing``
    receives the milliseconds spent in the database and in the pipeline (``beacon.trace``)."""
    timing = {} if timing is None else timing
    problems = message_problems(msg)
    if problems:
        raise Rejected(
            status.HTTP_422_UNPROCESSABLE_ENTITY,
            f"message {msg.id[:80]!r} cannot be stored or carried: {'; '.join(problems)}",
        )
    started = time.perf_counter()
    if msg.direction == STATUS:
        response = await _process_status(state, msg)
        timing["db"] = (time.perf_counter() - started) * 1000
    elif msg.direction == INBOUND:
        response = await _process_inbound(state, msg, timing)
    else:
        raise Rejected(
            status.HTTP_422_UNPROCESSABLE_ENTITY,
            f"message {msg.id} has direction {msg.direction!r}: the processing endpoint takes inbound "
            "messages and statuses (send proactive messages with POST /v1/messages/send)",
        )
    metrics.PROCESS_SECONDS.labels(msg.direction).observe(time.perf_counter() - started)
    return response


async def process_group(state: StateDep, group: MessageGroup, timing: Timing | None = None) -> bytes:
    """Answer a user's coalesced messages once, as one turn; the JSON of its ProcessResult (``message_id`` is the
    group's id). Idempotent per message: messages already answered (alone, or in a group a replay formed
    differently) are not answered again (their stored replies are returned first, same ids); the rest are
    answered together. Raises Rejected for a permanent refusal."""
    refusal = group.problem() or next(
        (f"message {m.id[:80]!r} cannot be stored or carried: {'; '.join(p)}"
         for m in group.messages if (p := message_problems(m))), None)
    if refusal is not None:
        raise Rejected(status.HTTP_422_UNPROCESSABLE_ENTITY, refusal)
    started = time.perf_counter()
    for attempt in (1, 2, 3):
        try:
            response = await _process_group(state, group, {} if timing is None else timing)
            break
        except GroupConflictError as exc:
            if attempt == 3:
                raise
            log.info("%s; answering again what is left", exc)
    metrics.PROCESS_SECONDS.labels(INBOUND).observe(time.perf_counter() - started)
    return response


async def _process_group(state: StateDep, group: MessageGroup, timing: Timing) -> bytes:
    seen = await asyncio.gather(*(state.lookup.submit(Lookup(m.id, m.user_key)) for m in group.messages))
    found = [one.replies for one in seen]
    remaining = [m for m, stored in zip(group.messages, found, strict=True) if stored is None]
    answered: list[bytes] = []
    for stored in found:
        if stored is not None and stored not in answered:
            answered.append(stored)  # the members of one recorded group share its replies: once each
    if not remaining:
        metrics.PROCESSED.labels(INBOUND, "duplicate").inc()
        return _result(group.id, True, _joined(answered))
    body = await _process_inbound(state, remaining[-1], timing, remaining[:-1])
    if not answered:
        return body
    result = orjson.loads(body)
    result["replies"] = orjson.loads(_joined([*answered, orjson.dumps(result["replies"])]))
    result["message_id"] = group.id
    return orjson.dumps(result)


def _joined(reply_lists: list[bytes]) -> bytes:
    """JSON lists of replies as one list, in order."""
    return orjson.dumps([reply for replies in reply_lists for reply in orjson.loads(replies)])


async def _process_status(state: StateDep, msg: BeaconMessage) -> bytes:
    fresh = await state.statuses.submit(StatusJob(msg, utcnow()))
    metrics.PROCESSED.labels(STATUS, "new" if fresh else "duplicate").inc()
    return _result(msg.id, not fresh, b"[]")


async def _process_inbound(
    state: StateDep, msg: BeaconMessage, timing: Timing, earlier: list[BeaconMessage] | None = None
) -> bytes:
    """One turn for ``msg`` (and, coalesced with it, the ``earlier`` messages of its group)."""
    result_id = group_id([m.id for m in [*earlier, msg]]) if earlier else msg.id
    started = time.perf_counter()
    seen = await state.lookup.submit(Lookup(msg.id, msg.user_key))
    looked_up = time.perf_counter()
    timing["db"] = (looked_up - started) * 1000
    if seen.replies is not None:
        metrics.PROCESSED.labels(INBOUND, "duplicate").inc()
        return _result(result_id, True, seen.replies)

    turn = Turn(message=msg, settings=state.settings, sessions=state.sessions, messages=[*(earlier or []), msg])
    state_before = b""
    if seen.handoff:
        # A person answers this user: their message is recorded, the bot stays silent.
        turn.handled_by = "handoff"
        replies: list[BeaconMessage] = []
    else:
        if any(getattr(handler, "needs_context", False) for handler in state.handlers):
            turn.user, turn.state = await load_user_and_state(state.read_engine, msg)
            state_before = orjson.dumps(turn.state, option=orjson.OPT_SORT_KEYS)
        replies = await run_pipeline(state.handlers, turn)
    piped = time.perf_counter()
    timing["pipeline"] = (piped - looked_up) * 1000
    now = utcnow()
    replies, refused = apply_window(state.settings, replies, msg.channel_timestamp or msg.created_at, now)
    for refusal in refused:
        metrics.REFUSED.inc()
        log.warning("reply %s to message %s not sent: %s", refusal.message_id, msg.id, refusal.reason)
    replies_json = store.dump_messages(replies)
    record = store.TurnRecord(
        msg,
        replies,
        replies_json,
        reset_conversation=turn.reset_conversation,
        state_json=state_json_if_changed(state_before, turn.state, msg) if state_before else None,
        outbox=turn.outbox.items,
        handoff=(turn.handoff_by, turn.handoff_requested) if turn.handoff_requested is not None else None,
        earlier=earlier or [],
    )
    stored = await state.writer.write(record, now)
    timing["db"] += (time.perf_counter() - piped) * 1000
    if stored is not None:
        # Processed meanwhile (a concurrent duplicate won the processed-id constraint): its replies.
        metrics.PROCESSED.labels(INBOUND, "duplicate").inc()
        return _result(result_id, True, stored)
    metrics.PROCESSED.labels(INBOUND, "new").inc()
    if record.handoff is not None:
        await refresh_waiting(state.read_engine)
    if turn.outbox.items and state.outbox is not None:
        state.outbox.wake()
    metrics.HANDLED.labels(turn.handled_by or "none").inc()
    return _result(result_id, False, replies_json, refused)
