"""The console's login rules without a browser: signed session cookies, the CSRF and Origin checks, and
the token a console starts with (production refuses to start without one)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

from pydantic import SecretStr

from beacon.config import Settings
from beacon.console import auth
from beacon.console.cli import console_token


def _settings(**kw: object) -> Settings:
    return Settings(_env_file=None, **kw)  # type: ignore[arg-type]


def test_a_session_cookie_is_valid_only_unaltered_with_its_token_and_until_it_expires() -> None:
    cookie = auth.new_session("secret-a", now=1000)
    sid = auth.session_id("secret-a", cookie, now=1001)
    assert sid is not None
    assert auth.session_id("secret-b", cookie, now=1001) is None
    assert auth.session_id("secret-a", cookie.replace(sid, "0" * len(sid)), now=1001) is None
    assert auth.session_id("secret-a", cookie, now=1000 + auth.SESSION_SECONDS + 1) is None
    assert auth.session_id("secret-a", None) is None and auth.session_id("secret-a", "junk") is None
    assert auth.csrf_token("secret-a", sid) != auth.csrf_token("secret-a", "other")


def test_a_post_must_come_from_the_console_itself() -> None:
    assert auth.same_origin("http://127.0.0.1:8084", "127.0.0.1:8084")
    assert not auth.same_origin("http://evil.example", "127.0.0.1:8084")
    assert not auth.same_origin(None, "127.0.0.1:8084")


def test_development_generates_one_token_kept_in_the_data_dir(tmp_path: Path) -> None:
    settings = _settings(data_dir=tmp_path)
    token, generated = console_token(settings)
    assert generated and len(token) >= 24
    assert console_token(settings) == (token, True)
    assert stat.S_IMODE((tmp_path / "console-token").stat().st_mode) == 0o600
    assert console_token(_settings(data_dir=tmp_path, console_token=SecretStr("mine"))) == ("mine", False)


def test_production_refuses_to_start_the_console_without_a_token(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BEACON_")}
    env.update({"BEACON_ENV": "production", "BEACON_API_TOKEN": "a-long-random-service-token",
                "BEACON_DATA_DIR": str(tmp_path)})
    result = subprocess.run([sys.executable, "-m", "beacon", "console"], env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "without BEACON_CONSOLE_TOKEN" in result.stderr
    assert not (tmp_path / "console-token").exists()
