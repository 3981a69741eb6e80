"""``beacon fake-whatsapp``: serve the fake Cloud API; ``beacon fake-whatsapp say``: play a user;
``beacon fake-whatsapp event``: play a user's event (an edit, a deletion, a number change...)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Annotated

import typer

from beacon.config import get_settings

fake_whatsapp_app = typer.Typer(help="The local fake of the WhatsApp Cloud API (and Meta's webhook driver).")


@fake_whatsapp_app.callback(invoke_without_command=True)
def serve(
    ctx: typer.Context,
    port: Annotated[int | None, typer.Option(help="Port (default BEACON_FAKE_WHATSAPP_PORT).")] = None,
    statuses: Annotated[bool, typer.Option(help="Post sent/delivered/read status webhooks back.")] = False,
) -> None:
    """Serve the fake Cloud API until interrupted."""
    if ctx.invoked_subcommand is not None:
        return
    from beacon.fakes.whatsapp.server import from_settings, running

    settings = get_settings()
    fake = from_settings(settings)
    fake.state.statuses = statuses

    async def main() -> None:
        async with running(fake, settings.local.fake_whatsapp_host, port or settings.local.fake_whatsapp_port) as url:
            typer.echo(f"fake Cloud API at {url}; webhooks go to {fake.state.gateway_url}")
            await asyncio.Event().wait()

    from beacon.gateway.base import run_fast

    with contextlib.suppress(KeyboardInterrupt):
        run_fast(main())


@fake_whatsapp_app.command("say")
def say(
    text: Annotated[str, typer.Argument(help="What the user writes (with --button: the button's title).")],
    from_: Annotated[str, typer.Option("--from", help="The user's number (wa_id), e.g. 447700900123.")],
    name: Annotated[str | None, typer.Option(help="The user's profile name.")] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the reply.")] = 30.0,
    url: Annotated[str | None, typer.Option(help="The fake's URL (default http://127.0.0.1:<port>).")] = None,
    button: Annotated[str | None, typer.Option(help="Tap the reply button with this id instead of writing.")] = None,
) -> None:
    """Post a signed webhook as user NUMBER through the running fake, then print the bot's reply."""
    import httpx

    settings = get_settings()
    base = (url or f"http://127.0.0.1:{settings.local.fake_whatsapp_port}").rstrip("/")
    to = from_.lstrip("+")
    with httpx.Client(timeout=timeout + 5) as client:
        try:
            after = client.get(f"{base}/_fake/stats").json()["last_seq"]
            what = {"button": {"id": button, "title": text}} if button else {"text": text}
            said = client.post(f"{base}/_fake/say", json={"from": to, "name": name, **what})
        except httpx.HTTPError as exc:
            typer.echo(f"error: the fake Cloud API at {base} did not answer ({exc}); start it with "
                       "`beacon fake-whatsapp` or `beacon dev`.", err=True)
            raise typer.Exit(1) from exc
        if said.status_code != 200:
            typer.echo(f"error: the gateway did not accept the webhook: {said.text}. Is `beacon gateway whatsapp` "
                       "running?", err=True)
            raise typer.Exit(1)
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            sends = client.get(f"{base}/_fake/sent", params={"after": after, "wait": min(remaining, 10)}).json()
            for item in sends:
                after = max(after, item["seq"])
                body = item["body"]
                if str(item.get("to") or "").lstrip("+") != to or body.get("status") == "read":
                    continue
                typer.echo(_render(body))
                return
    typer.echo(f"error: no reply to {to} within {timeout:.0f}s (the webhook was accepted: check the workers "
               "and the gateway's sender).", err=True)
    raise typer.Exit(1)


@fake_whatsapp_app.command("event")
def event(
    kind: Annotated[str, typer.Argument(help="edit, revoke, user_changed_number, call_permission_reply or "
                                             "interactive_error.")],
    from_: Annotated[str, typer.Option("--from", help="The user's number (wa_id), e.g. 447700900123.")],
    original: Annotated[str | None, typer.Option(help="wamid of the message edited or revoked.")] = None,
    text: Annotated[str | None, typer.Option(help="An edit's new text.")] = None,
    new_wa_id: Annotated[str | None, typer.Option(help="The number a user changed to.")] = None,
    response: Annotated[str, typer.Option(help="A call permission reply: accept or reject.")] = "accept",
    url: Annotated[str | None, typer.Option(help="The fake's URL (default http://127.0.0.1:<port>).")] = None,
) -> None:
    """Post a signed webhook of user NUMBER's event through the running fake; print its wamid. Events get
    no reply (the bot records them)."""
    import httpx

    settings = get_settings()
    base = (url or f"http://127.0.0.1:{settings.local.fake_whatsapp_port}").rstrip("/")
    body = {"event": kind, "from": from_.lstrip("+"), "original": original, "text": text, "new_wa_id": new_wa_id,
            "response": response}
    try:
        answer = httpx.post(f"{base}/_fake/event", json=body, timeout=60)
    except httpx.HTTPError as exc:
        typer.echo(f"error: the fake Cloud API at {base} did not answer ({exc}); start it with "
                   "`beacon fake-whatsapp` or `beacon dev`.", err=True)
        raise typer.Exit(1) from exc
    if answer.status_code != 200:
        typer.echo(f"error: {answer.text}", err=True)
        raise typer.Exit(1)
    typer.echo(answer.json()["wamid"])


def _render(body: dict[str, object]) -> str:
    mtype = str(body.get("type", "text"))
    obj = body.get(mtype)
    if mtype == "text" and isinstance(obj, dict):
        return str(obj.get("body", ""))
    import json

    return f"[{mtype}] {json.dumps(obj, ensure_ascii=False)}"
