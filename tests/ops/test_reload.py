"""What `beacon dev --reload` watches, and the reloader restarting a supervised child when a watched
file changes (real files, a real watcher, a real child process)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from beacon.config import Settings
from beacon.ops.reload import BEACON_DIR, Reloader, watched_paths
from beacon.ops.supervisor import ProcessSpec, Supervisor
from tests.conftest import ROOT


def test_it_watches_beacon_and_the_packages_of_the_pipelines_own_handlers() -> None:
    settings = Settings(_env_file=None, api_pipeline="commands,shop.bot:bot,orderbot.handlers:bot,agent,fallback")
    assert watched_paths(settings) == [BEACON_DIR, ROOT / "examples" / "shop", ROOT / "examples" / "orderbot"]
    # A module that cannot be found is left to the API's start-up check, which names it.
    assert watched_paths(Settings(_env_file=None, api_pipeline="commands,nowhere.mod:bot")) == [BEACON_DIR]


def test_a_changed_file_restarts_the_child_once_and_says_which(tmp_path: Path) -> None:
    code = tmp_path / "code"
    code.mkdir()
    (code / "handlers.py").write_text("A = 1\n")
    said: list[str] = []
    sup = Supervisor(tmp_path / "logs", report=said.append)
    reloader = Reloader([code], "api", said.append)
    try:
        child = sup.add(ProcessSpec("api", [sys.executable, "-c", "import time; time.sleep(600)"]))
        first_pid = child.pid
        reloader.start()
        deadline = time.monotonic() + 30
        while child.restarts == 0 and time.monotonic() < deadline:
            (code / "handlers.py").write_text(f"A = {time.monotonic()}\n")  # until the watcher is up and sees it
            time.sleep(0.3)
            reloader.apply(sup)
        assert child.restarts >= 1 and child.pid is not None and child.pid != first_pid
        assert said[0] == f"[reload] {code / 'handlers.py'} changed: restarting api"
        assert not [line for line in said if "exited" in line]  # a reload is no crash
    finally:
        reloader.stop()
        sup.stop()
