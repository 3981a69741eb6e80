"""The README stays true: every setting documented as the code defines it, every command named."""

from __future__ import annotations

import re

from beacon.config import settings_markdown
from tests.conftest import ROOT

README = (ROOT / "README.md").read_text()


def test_settings_table_matches_the_settings_class() -> None:
    block = re.search(r"<!-- SETTINGS:BEGIN[^>]*-->\n(.*?)\n<!-- SETTINGS:END -->", README, re.S)
    assert block, "README lost its settings block"
    assert block.group(1) == settings_markdown(), (
        "the README's settings table differs from beacon/config.py; regenerate it with "
        "`python -c 'from beacon.config import settings_markdown; print(settings_markdown())'`"
    )


def test_every_command_is_documented() -> None:
    from typer.main import get_command

    from beacon.cli import app

    group = get_command(app)
    names = sorted(group.commands)  # type: ignore[attr-defined]
    missing = [name for name in names if f"`beacon {name}" not in README]
    assert not missing, f"commands missing from the README: {missing}"


def test_the_two_commands_are_there_and_ci_runs_the_test_one() -> None:
    assert "./scripts/dev" in README and "./scripts/test" in README
    assert "./scripts/test" in (ROOT / ".ci" / "run").read_text()


def test_turn_table_matches_the_turn_class() -> None:
    from beacon.bot.reference import turn_markdown

    block = re.search(r"<!-- TURN:BEGIN[^>]*-->\n(.*?)\n<!-- TURN:END -->", README, re.S)
    assert block, "README lost its Turn reference block"
    assert block.group(1) == turn_markdown(), (
        "the README's Turn table differs from beacon/bot/turn.py; regenerate it with `python -m beacon.bot.reference`"
    )
