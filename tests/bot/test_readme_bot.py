"""The README's example bot and its test, as written there; plus what the turn offers a handler."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from beacon.bot import BotUser, MediaUnavailable, Router, Turn
from beacon.ops.process import free_port
from beacon.testing import BotTester

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_the_readme_shows_this_bot_verbatim() -> None:
    code = (Path(__file__).parent / "readme_bot.py").read_text().split('"""\n\n', 1)[1]
    assert code.strip() in README.replace("# mybot/handlers.py\n", "")


async def test_the_readme_bot_answers_keeps_state_and_records_its_event(tmp_path: Path) -> None:
    async with BotTester("commands,tests.bot.readme_bot:bot,fallback", tmp_path) as bot:
        assert (await bot.say("/start", user="ada"))[0].text == "Hello Ada!"
        assert await bot.state("ada") == {"visits": 1}
        [started] = await bot.press("go", user="ada")
        assert re.fullmatch(r"Started \(ref [0-9a-f]{8}\)\.", started.text or "")
        assert await bot.outbox("ada") == [("started", {"visits": 1})]


seen: dict[str, Any] = {}
probe = Router()


@probe.kind("image")
async def image(turn: Turn) -> str:
    seen["user"] = turn.user
    seen["history"] = [m.text for m in await turn.history(10)]
    seen["key"] = turn.idempotency_key
    try:
        await turn.media_bytes()
    except MediaUnavailable as exc:
        seen["media"] = str(exc)
        seen["media_retryable"] = exc.retryable  # left uncaught: 503, waited out by the worker
    return "ok"


async def test_a_handler_sees_the_stored_user_the_history_and_a_media_seam(tmp_path: Path) -> None:
    from beacon.messages import Media

    no_gateway = f"http://127.0.0.1:{free_port()}"
    async with BotTester("commands,tests.bot.test_readme_bot:probe,fallback", tmp_path,
                         gateway_urls={"whatsapp": no_gateway}) as bot:
        await bot.say("first", user="bo")
        msg = bot.message("bo", kind="image", text=None, media=Media(id="m1", mime_type="image/png"),
                          metadata={"language": "de"})
        assert [r.text for r in await bot.send(msg)] == ["ok"]
    user: BotUser = seen["user"]
    assert user.profile_name == "Bo" and user.language == "de"
    assert user.first_seen is not None and user.opted_out is False and not user.is_new
    assert seen["history"] == ["first", "You said: first"]
    assert seen["key"] != msg.id and isinstance(seen["key"], str)
    assert f"the whatsapp gateway at {no_gateway} cannot be reached" in str(seen["media"])
    assert seen["media_retryable"] is True
