"""Handlers of the user's own code in BEACON_API_PIPELINE: import paths, entry points, clear refusals."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from beacon.api.handlers import build_pipeline
from beacon.bot.load import HandlerImportError, load_handler
from tests.conftest import make_settings

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def own_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A package ``mybot_<test>`` on sys.path with handlers, a non-handler and an entry point."""
    name = f"mybot_{os.getpid()}_{abs(hash(tmp_path)) % 10**6}"
    pkg = tmp_path / name
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "handlers.py").write_text(textwrap.dedent("""
        from beacon.bot import Router, Turn

        async def hello(turn: Turn) -> str | None:
            return "hello from my package" if turn.text == "hi" else None

        class Echo:
            async def handle(self, turn: Turn) -> list[str]:
                return [turn.text.upper()]

        echo = Echo()
        router = Router()
        not_a_handler = 42

        def sync_function(turn: Turn) -> str:
            return "sync"
        """))
    (pkg / "broken.py").write_text("import json\nraise RuntimeError('the bot has a bug at import')\n")
    dist = tmp_path / f"{name}-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(f"[beacon.handlers]\n{name}-hello = {name}.handlers:hello\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield pkg
    for module in [m for m in sys.modules if m.startswith(name)]:
        del sys.modules[module]


async def test_import_paths_and_entry_points_become_handlers_that_answer_or_pass(own_package: Path) -> None:
    from beacon.bot.turn import Turn
    from beacon.messages import BeaconMessage

    name = own_package.name
    pipeline = build_pipeline(make_settings(api_pipeline=(
        f"{name}.handlers:hello", f"{name}-hello", f"{name}.handlers:echo", f"{name}.handlers:router", "fallback",
    )))
    assert [h.name for h in pipeline] == [
        f"{name}.handlers:hello", f"{name}-hello", f"{name}.handlers:echo", f"{name}.handlers:router", "fallback",
    ]
    msg = BeaconMessage.inbound_text(channel="whatsapp", account="1", user_id="2", text="hi")
    turn = Turn(message=msg, settings=make_settings(), sessions=None)  # type: ignore[arg-type]
    assert await pipeline[0].handle(turn) == ["hello from my package"]
    assert await pipeline[1].handle(turn) == ["hello from my package"]
    other = Turn(message=msg.model_copy(update={"text": "yo"}), settings=make_settings(), sessions=None)  # type: ignore[arg-type]
    assert await pipeline[0].handle(other) is None
    assert await pipeline[2].handle(other) == ["YO"]
    assert await pipeline[3].handle(other) is None  # an empty router passes


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("nosuchbot.handlers:bot", "module 'nosuchbot' not found"),
        ("{pkg}.handlers:missing", "module '{pkg}.handlers' has no attribute 'missing'"),
        ("{pkg}.handlers:not_a_handler", "is a int, not a handler"),
        ("{pkg}.handlers:sync_function", "is a function, not a handler"),
        ("{pkg}.broken:bot", "importing module '{pkg}.broken' failed: RuntimeError: the bot has a bug at import"),
        ("nosuchentrypoint", "no installed entry point of group 'beacon.handlers' has that name"),
    ],
)
def test_what_cannot_be_loaded_is_named_with_the_reason(own_package: Path, path: str, expected: str) -> None:
    pkg = own_package.name
    with pytest.raises(HandlerImportError) as caught:
        load_handler(path.format(pkg=pkg))
    assert expected.format(pkg=pkg) in str(caught.value)


def test_the_api_refuses_to_start_naming_the_handler_it_could_not_import(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BEACON_")}
    env.update({"BEACON_DATA_DIR": str(tmp_path), "BEACON_API_PIPELINE": "commands,nosuchbot.handlers:bot",
                "BEACON_DB_AUTO_MIGRATE": "true"})
    done = subprocess.run([sys.executable, "-m", "beacon", "api"], env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode != 0
    assert "handler 'nosuchbot.handlers:bot' in BEACON_API_PIPELINE: module 'nosuchbot' not found" in done.stderr


def test_comma_separated_and_json_pipelines_read_the_same() -> None:
    from beacon.config import Settings

    comma = Settings(_env_file=None, api_pipeline="commands, orderbot.handlers:bot ,fallback")
    as_json = Settings(_env_file=None, api_pipeline='["commands", "orderbot.handlers:bot", "fallback"]')
    assert comma.api.pipeline == as_json.api.pipeline == ("commands", "orderbot.handlers:bot", "fallback")
