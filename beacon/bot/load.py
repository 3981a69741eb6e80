"""Handlers of your own in BEACON_API_PIPELINE: ``package.module:attribute`` import paths and
installed entry points (group ``beacon.handlers``), checked when the API starts."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Awaitable, Callable
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

from beacon.bot.turn import Turn
from beacon.config import Settings
from beacon.errors import ConfigError
from beacon.messages import BeaconMessage

if TYPE_CHECKING:
    from beacon.api.pipeline import Answer, Handler

#: The entry-point group a package registers its handlers in (``[project.entry-points."beacon.handlers"]``).
ENTRY_POINT_GROUP = "beacon.handlers"

#: What a handler of your own may answer: replies (texts or messages), one reply, or None to pass.
BotAnswer = list[str | BeaconMessage] | str | BeaconMessage | None


class HandlerImportError(ConfigError):
    """A handler named in BEACON_API_PIPELINE could not be imported or is not a handler."""


class UserHandler:
    """A handler from the user's code, wrapped: normalises its answer, marks that turns need the
    user and state loaded (``needs_context``). The target's optional ``async start()`` (or
    ``async start(settings)``, to reach the API's settings, e.g. its database) runs when the API
    starts, and ``async close()`` when it stops."""

    needs_context = True

    def __init__(self, name: str, target: Any, settings: Settings | None = None) -> None:
        self.name = name
        self.target = target
        self.settings = settings
        handle = getattr(target, "handle", None)
        self._call: Callable[[Turn], Awaitable[BotAnswer]] = handle if callable(handle) else target

    async def start(self) -> None:
        start = getattr(self.target, "start", None)
        if start is None:
            return
        if inspect.signature(start).parameters:
            await start(self.settings)
        else:
            await start()

    async def close(self) -> None:
        close = getattr(self.target, "close", None)
        if close is not None:
            await close()

    async def handle(self, turn: Turn) -> Answer | None:
        answer = await self._call(turn)
        if answer is None or isinstance(answer, list):
            return answer
        return [answer]


def is_handler(obj: Any) -> bool:
    """An async function of one argument, or an object with an async ``handle(turn)`` method."""
    if inspect.iscoroutinefunction(obj):
        return True
    return inspect.iscoroutinefunction(getattr(obj, "handle", None))


def load_handler(name: str, settings: Settings | None = None) -> Handler:
    """The handler ``name`` names: ``module:attribute`` (dots allowed in both) or an entry point of
    group ``beacon.handlers``. Raises HandlerImportError saying what is missing and why."""
    if ":" in name:
        target = _import(name)
    else:
        found = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == name]
        if not found:
            installed = sorted(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))
            raise HandlerImportError(
                f"unknown handler {name!r} in BEACON_API_PIPELINE: not a built-in (commands, agent, hook, "
                f"fallback), not an import path (package.module:attribute) and no installed entry point of group "
                f"{ENTRY_POINT_GROUP!r} has that name (installed: {', '.join(installed) or 'none'})"
            )
        try:
            target = found[0].load()
        except Exception as exc:  # reported to the operator with the cause, at start-up
            raise HandlerImportError(
                f"handler {name!r} (entry point {found[0].value}) in BEACON_API_PIPELINE could not be imported: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
    if not is_handler(target):
        raise HandlerImportError(
            f"handler {name!r} in BEACON_API_PIPELINE is a {type(target).__name__}, not a handler: give an async "
            "function taking a Turn, or an object (e.g. a beacon.bot.Router) with an async handle(turn) method"
        )
    return UserHandler(name, target, settings)


def _import(path: str) -> Any:
    module_name, _, attribute = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise HandlerImportError(
            f"handler {path!r} in BEACON_API_PIPELINE: module {exc.name!r} not found (is the package installed, "
            f"or its directory on PYTHONPATH?)"
        ) from exc
    except Exception as exc:  # the user's module failed while importing: say where and why
        raise HandlerImportError(
            f"handler {path!r} in BEACON_API_PIPELINE: importing module {module_name!r} failed: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    target: Any = module
    for part in attribute.split("."):
        if not part or not hasattr(target, part):
            raise HandlerImportError(
                f"handler {path!r} in BEACON_API_PIPELINE: module {module_name!r} has no attribute {attribute!r}"
            )
        target = getattr(target, part)
    return target
