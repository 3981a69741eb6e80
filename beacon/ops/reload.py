"""``beacon dev --reload``: restart the API when the code it runs changes.

Watches ``beacon/`` and the packages of the handlers named in BEACON_API_PIPELINE (import paths
``package.module:attr`` and entry points, resolved the way the API will import them: this process
has the same environment). A watcher thread collects changed ``.py`` files; the supervisor's loop
(one thread, as the Supervisor wants) restarts the API with a line naming the files."""

from __future__ import annotations

import importlib.util
import queue
import threading
from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path

from beacon.bot.load import ENTRY_POINT_GROUP
from beacon.config import Settings
from beacon.ops.supervisor import Supervisor

BEACON_DIR = Path(__file__).resolve().parents[1]
BUILT_INS = {"commands", "agent", "hook", "fallback"}


def _package_dirs(module: str) -> list[Path]:
    """The directory of ``module``'s top-level package (or the file of a lone module); [] if not found."""
    try:
        spec = importlib.util.find_spec(module.split(".", 1)[0])
    except (ImportError, ValueError):
        return []
    if spec is None:
        return []
    if spec.submodule_search_locations:
        return [Path(p).resolve() for p in spec.submodule_search_locations]
    return [Path(spec.origin).resolve()] if spec.origin else []


def watched_paths(settings: Settings) -> list[Path]:
    """``beacon/`` and the code of the pipeline's own handlers (those found; the API reports the rest)."""
    paths = [BEACON_DIR]
    installed = {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}
    for name in settings.api.pipeline:
        if name in BUILT_INS:
            continue
        module = name.partition(":")[0] if ":" in name else getattr(installed.get(name), "module", "")
        for path in _package_dirs(module) if module else []:
            if not any(path == p or p in path.parents for p in paths):
                paths.append(path)
    return paths


class Reloader:
    """Watches ``paths`` in a thread; ``apply`` (called from the supervisor's loop) restarts ``child``
    once per batch of changes."""

    def __init__(self, paths: list[Path], child: str = "api", say: Callable[[str], None] = print) -> None:
        self.paths = paths
        self.child = child
        self.say = say
        self._changes: queue.SimpleQueue[set[str]] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="beacon-reload", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _watch(self) -> None:
        from watchfiles import PythonFilter, watch

        for changes in watch(*self.paths, watch_filter=PythonFilter(), stop_event=self._stop, raise_interrupt=False):
            self._changes.put({path for _change, path in changes})

    def apply(self, sup: Supervisor) -> None:
        """Restart the child if files changed since the last call."""
        changed: set[str] = set()
        while not self._changes.empty():
            changed |= self._changes.get_nowait()
        if not changed:
            return
        names = sorted(_shown(Path(p)) for p in changed)
        shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        self.say(f"[reload] {shown} changed: restarting {self.child}")
        sup.restart(self.child)


def _shown(path: Path) -> str:
    """A path relative to the working directory when under it (as the user typed it)."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)
