"""``beacon fake-telegram``: serve the fake Bot API; ``beacon fake-telegram say``: play a user."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Annotated, Any

import typer

from beacon.config import get_settings

fake_telegram_app = typer.Typer(help="The local fake of Telegram's Bot API (and its webhook delivery).")
#: Methods that show the user something (a typing indicator is not a reply).
REPLY_METHODS = frozenset({"sendMessage", "sendPhoto", "sendDocument", "sendVoice", "sendAudio", "sendVideo",
                           "sendSticker", "sendLocation", "sendContact"})


@fake_telegram_app.callback(invoke_without_command=True)
def serve(
    ctx: typer.Context,
    port: Annotated[int | None, typer.Option(help="Port (default BEACON_FAKE_TELEGRAM_PORT).")] = None,
) -> None:
    """Serve the fake Bot API until interrupted."""
    if ctx.invoked_subcommand is not None:
        return
    from beacon.fakes.telegram.server import from_settings, running

    settings = get_settings()
    fake = from_settings(settings)

    async def main() -> None:
        async with running(fake, settings.local.fake_telegram_host, port or settings.local.fake_telegram_port) as url:
            typer.echo(f"fake Bot API at {url} (bot {fake.state.bot_id}); updates go to "
                       f"{fake.state.webhook.url or '(no webhook)'} until setWebhook changes it")
            await asyncio.Event().wait()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())


@fake_telegram_app.command("say")
def say(
    text: Annotated[str, typer.Argument(help="What the user writes.")],
    chat: Annotated[int, typer.Option("--chat", help="The user's chat id, e.g. 987654321.")],
    name: Annotated[str | None, typer.Option(help="The user's name.")] = None,
    button: Annotated[bool, typer.Option(help="TEXT is the callback_data of a button to tap, not a message.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the reply.")] = 30.0,
    url: Annotated[str | None, typer.Option(help="The fake's URL (default http://127.0.0.1:<port>).")] = None,
) -> None:
    """Deliver an Update from chat ID through the running fake to the gateway, then print the bot's reply."""
    import httpx

    settings = get_settings()
    base = (url or f"http://127.0.0.1:{settings.local.fake_telegram_port}").rstrip("/")
    body: dict[str, Any] = {"chat_id": chat, "name": name, "timeout": timeout}
    body["button" if button else "text"] = text
    with httpx.Client(timeout=timeout + 5) as client:
        try:
            after = len(client.get(f"{base}/_fake/calls").json())
            said = client.post(f"{base}/_fake/say", json=body)
        except httpx.HTTPError as exc:
            typer.echo(f"error: the fake Bot API at {base} did not answer ({type(exc).__name__}); start it with "
                       "`beacon fake-telegram` or `beacon dev`.", err=True)
            raise typer.Exit(1) from None
        answer = said.json()
        if said.status_code != 200 or not isinstance(answer.get("status"), int) or not 200 <= answer["status"] < 300:
            typer.echo(f"error: the webhook {answer.get('webhook') or ''} did not accept the update (answer: "
                       f"{answer.get('status') or answer.get('error') or 'no connection'}). Is `beacon gateway "
                       "telegram` running, with the same BEACON_TELEGRAM_WEBHOOK_SECRET?", err=True)
            raise typer.Exit(1)
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            calls = client.get(f"{base}/_fake/calls", params={"after": after, "wait": min(remaining, 10)}).json()
            for call in calls:
                after = max(after, call["seq"])
                if call["method"] in REPLY_METHODS and call["chat_id"] == chat and call["status"] == 200:
                    typer.echo(render(call["method"], call["params"]))
                    return
    typer.echo(f"error: no reply to chat {chat} within {timeout:.0f}s (the gateway accepted the update: check the "
               "workers and the gateway's sender).", err=True)
    raise typer.Exit(1)


def render(method: str, params: dict[str, Any]) -> str:
    """A reply as a line of text: the text itself, or ``[method] {params}`` for anything else."""
    if method == "sendMessage":
        lines = [str(params.get("text", ""))]
        markup = params.get("reply_markup")
        rows = markup.get("inline_keyboard", []) if isinstance(markup, dict) else []
        lines += [f"  [{b.get('text')}] ({b.get('callback_data')})" for row in rows for b in row if isinstance(b, dict)]
        return "\n".join(lines)
    shown = {k: v for k, v in params.items() if k != "chat_id"}
    return f"[{method}] {json.dumps(shown, ensure_ascii=False)}"
