"""A fake Beacon API honouring the processing contract, for worker tests and benchmarks (a fake, not product code).

``python -m beacon.fakes.beacon_api --port 8765 [--latency-min 0 --latency-max 0.005]``

``POST /v1/messages/process`` (and ``/process-batch``, one NDJSON line per message as it is done) checks the bearer
token and the idempotency key, answers
``You said: <text>`` with deterministic reply ids (``inbound.reply_text``), remembers each id
(a repeat returns the same replies with ``duplicate: true``) and obeys a few test commands in the
text: ``reject`` -> 422; ``poison`` -> 500 every time; ``fail:N`` -> 500 for the first N calls of
that message; ``sleep:S`` -> wait S seconds first. Statuses get ``replies: []``.
A coalesced ``MessageGroup`` (``{"messages": [...]}``) is one call answered once: ``You said: <texts, one per line>``
(reply id from the group id).
``GET /_stub/stats`` -> ``{"calls": n, "distinct": n, "batches": {size: requests}, "requests": n, "groups": n,
"ready_probes": n}``;
``GET /healthz`` -> 200; ``GET /readyz`` -> 200, or 503 while "down". ``POST /_stub/outage`` with
``{"down": true}`` plays the API without its database: every process call and ``/readyz`` answer 503
until ``{"down": false}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
from collections import Counter

from aiohttp import web

from beacon.groups import MessageGroup
from beacon.messages import INBOUND, BeaconMessage, stable_id


def make_stub_app(token: str, latency_min: float = 0.0, latency_max: float = 0.0) -> web.Application:
    """The stub API as an aiohttp application."""
    seen: dict[str, list[dict[str, object]]] = {}
    calls: Counter[str] = Counter()
    batches: Counter[int] = Counter()  # batch size -> requests
    shared_user_batches: list[int] = []  # batches holding two messages of one user (must stay empty)
    state = {"down": False, "ready_probes": 0, "calls_while_down": 0}
    requests = [0]  # HTTP requests to the processing endpoints
    groups = [0]  # coalesced groups answered

    async def handle_group(group: MessageGroup) -> tuple[int, dict[str, object]]:
        if state["down"]:
            state["calls_while_down"] += 1
            return 503, {"detail": "the stub plays a database outage"}
        calls[group.id] += 1
        groups[0] += 1
        if latency_max > 0:
            await asyncio.sleep(random.uniform(latency_min, latency_max))
        duplicate = group.id in seen
        if not duplicate:
            reply = group.last.reply_text("You said: " + "\n".join(m.text or "" for m in group.messages))
            reply = reply.model_copy(update={"id": stable_id("reply", group.id, "0")})
            seen[group.id] = [reply.model_dump(mode="json")]
        return 200, {"message_id": group.id, "duplicate": duplicate, "replies": seen[group.id]}

    async def handle(msg: BeaconMessage | MessageGroup) -> tuple[int, dict[str, object]]:
        if isinstance(msg, MessageGroup):
            return await handle_group(msg)
        if state["down"]:
            state["calls_while_down"] += 1
            return 503, {"detail": "the stub plays a database outage"}
        calls[msg.id] += 1
        text = msg.text or ""
        if text.startswith("sleep:"):
            await asyncio.sleep(float(text.split()[0].split(":", 1)[1]))
        if text.startswith("reject"):
            return 422, {"detail": "rejected by the stub"}
        if text.startswith("poison"):
            return 500, {"detail": "the stub always fails this one"}
        if text.startswith("fail:") and calls[msg.id] <= int(text.split()[0].split(":", 1)[1]):
            return 503, {"detail": "transient stub failure"}
        if latency_max > 0:
            await asyncio.sleep(random.uniform(latency_min, latency_max))
        duplicate = msg.id in seen
        if not duplicate:
            replies = [msg.reply_text(f"You said: {text}")] if msg.direction == INBOUND else []
            seen[msg.id] = [r.model_dump(mode="json") for r in replies]
        return 200, {"message_id": msg.id, "duplicate": duplicate, "replies": seen[msg.id]}

    def authorised(request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Bearer {token}"

    async def process(request: web.Request) -> web.Response:
        if not authorised(request):
            return web.json_response({"detail": "bad or missing service token"}, status=401)
        requests[0] += 1
        try:
            raw = json.loads(await request.read())
            msg = MessageGroup.model_validate(raw) if "messages" in raw else BeaconMessage.model_validate(raw)
        except ValueError as exc:
            return web.json_response({"detail": str(exc)[:300]}, status=422)
        if request.headers.get("Idempotency-Key") != msg.id:
            return web.json_response({"detail": "Idempotency-Key must be the message id"}, status=400)
        status, body = await handle(msg)
        return web.Response(body=json.dumps(body), content_type="application/json", status=status)

    async def process_batch(request: web.Request) -> web.StreamResponse:
        if not authorised(request):
            return web.json_response({"detail": "bad or missing service token"}, status=401)
        requests[0] += 1
        try:
            messages = [MessageGroup.model_validate(m) if "messages" in m else BeaconMessage.model_validate(m)
                        for m in json.loads(await request.read())["messages"]]
        except (ValueError, KeyError, TypeError) as exc:
            return web.json_response({"detail": str(exc)[:300]}, status=422)
        batches[len(messages)] += 1
        if len({m.user_key for m in messages}) < len(messages):
            shared_user_batches.append(len(messages))
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await response.prepare(request)

        async def item(index: int, msg: BeaconMessage | MessageGroup) -> dict[str, object]:
            status, body = await handle(msg)
            return {"index": index, "status": 200, "result": body} if status == 200 else \
                {"index": index, "status": status, **body}

        for done in asyncio.as_completed([item(i, m) for i, m in enumerate(messages)]):
            await response.write(json.dumps(await done).encode() + b"\n")  # each as soon as it is done
        await response.write_eof()
        return response

    async def stats(request: web.Request) -> web.Response:
        return web.json_response({"calls": sum(calls.values()), "distinct": len(seen),
                                  "batches": {str(k): v for k, v in sorted(batches.items())},
                                  "requests": requests[0], "groups": groups[0],
                                  "shared_user_batches": len(shared_user_batches),
                                  "ready_probes": state["ready_probes"], "calls_while_down": state["calls_while_down"]})

    async def readyz(request: web.Request) -> web.Response:
        state["ready_probes"] += 1
        if state["down"]:
            return web.json_response({"status": "unavailable", "database": "the stub plays an outage"}, status=503)
        return web.json_response({"status": "ok", "database": "ok"})

    async def outage(request: web.Request) -> web.Response:
        state["down"] = bool((await request.json())["down"])
        return web.json_response({"down": state["down"]})

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.router.add_post("/v1/messages/process", process)
    app.router.add_post("/v1/messages/process-batch", process_batch)
    app.router.add_get("/_stub/stats", stats)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_post("/_stub/outage", outage)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--token", default="dev-token")
    parser.add_argument("--latency-min", type=float, default=0.0)
    parser.add_argument("--latency-max", type=float, default=0.0)
    args = parser.parse_args()
    app = make_stub_app(args.token, args.latency_min, args.latency_max)
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
    web.run_app(app, host=args.host, port=args.port, print=lambda *_: print("stub api ready", flush=True),
                access_log=None)


if __name__ == "__main__":
    main()
