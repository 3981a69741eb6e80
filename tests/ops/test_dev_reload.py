"""`beacon dev --reload` through real processes, driven by `beacon.testing.StackChat` (texts and
button taps through the fake Cloud API): a change of a handler file makes the running API answer
with the new code, and the log names the file."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from beacon.config import Settings
from beacon.ops import stackfile
from beacon.ops.reload import BEACON_DIR
from beacon.testing import StackChat
from tests.ops.stack import Stack, wait_for

pytestmark = pytest.mark.slow

HANDLER = '''from beacon.bot import Router, Turn

bot = Router()


@bot.command("/version")
async def version(turn: Turn) -> str:
    return "{answer}"


@bot.button("again")
async def again(turn: Turn) -> str:
    return "pressed: {answer}"
'''


def test_a_changed_handler_file_restarts_the_api_and_the_stack_answers_with_the_new_code(
    registry_settings: Settings, unique: Callable[[str], str], tmp_path: Path
) -> None:
    code = tmp_path / "code" / "reloadbot"
    code.mkdir(parents=True)
    (code / "__init__.py").write_text("")
    handlers = code / "handlers.py"
    handlers.write_text(HANDLER.format(answer="old code"))
    stack = Stack.create(registry_settings, unique, tmp_path / "data", workers=1)
    env = {**stack.env, "PYTHONPATH": str(code.parent),
           "BEACON_API_PIPELINE": "commands,reloadbot.handlers:bot,fallback"}
    out = tmp_path / "dev.out"
    with out.open("w") as fh:
        dev = subprocess.Popen([sys.executable, "-m", "beacon", "dev", "--reload", "--keep-services"], env=env,
                               stdout=fh, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(lambda: "Ctrl-C stops everything." in out.read_text() or dev.poll() is not None,
                 "beacon dev to announce the stack", timeout=120)
        assert dev.poll() is None, out.read_text()
        assert f"Reloading the API when these change: {BEACON_DIR}, {code}" in out.read_text()
        with StackChat(stack.settings, user="447700900777") as chat:
            assert [r.text for r in chat.say("/version")] == ["old code"]
            assert [r.text for r in chat.say("/ping")] == ["pong"]
            assert [r.text for r in chat.press("again")] == ["pressed: old code"]
            api_pid = stackfile.read(stack.settings).processes["api"]  # type: ignore[union-attr]

            handlers.write_text(HANDLER.format(answer="new code"))
            wait_for(lambda: "[reload] " in out.read_text(), "the reloader to notice the change", timeout=30)
            assert f"[reload] {handlers} changed: restarting api" in out.read_text()
            # The worker retries while the API restarts: the next exchange is answered by the new process.
            wait_for(lambda: (card := stackfile.read(stack.settings)) is not None and card.processes["api"] != api_pid,
                     "the API to be restarted", timeout=30)
            assert [r.text for r in chat.say("/version")] == ["new code"]
            assert [r.text for r in chat.press("again", title="Again")] == ["pressed: new code"]
        dev.send_signal(signal.SIGINT)
        assert dev.wait(timeout=60) == 0
    finally:
        if dev.poll() is None:
            dev.send_signal(signal.SIGINT)
            try:
                dev.wait(timeout=60)
            except subprocess.TimeoutExpired:
                dev.kill()
