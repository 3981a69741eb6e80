"""Routing inside a bot: decorators that pick the function answering a message.

    router = Router()

    @router.command("/order")
    async def order(turn: Turn) -> str: ...

A route is tried in the order it was added; the first that matches and answers (not None) wins;
then included routers, then the router's fallback. A router is itself a handler (it has
``handle``), so routers nest and a router goes straight into BEACON_API_PIPELINE."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from beacon.bot.load import BotAnswer
from beacon.bot.turn import Turn

#: A route's function: takes the turn, answers replies or None to let the next route try.
HandlerFn = Callable[[Turn], Awaitable[BotAnswer]]
F = TypeVar("F", bound=HandlerFn)
#: A route's test of a turn.
Predicate = Callable[[Turn], bool]


@dataclass(frozen=True)
class Route:
    """A test and the function it routes to (``regex`` routes set ``turn.match``)."""

    matches: Predicate
    fn: HandlerFn
    pattern: re.Pattern[str] | None = None
    command: str | None = None


def _command_word(text: str) -> tuple[str, str]:
    """``"/Order@shopbot 42"`` -> ``("/order", "42")``: the command lower-cased without a Telegram
    ``@botname``, and the rest."""
    word, _, rest = text.strip().partition(" ")
    return word.split("@", 1)[0].lower(), rest.strip()


class Router:
    """Routes a turn to the first matching function; usable wherever a handler is."""

    def __init__(self, name: str = "router") -> None:
        self.name = name
        self._routes: list[Route | Router] = []
        self._fallback: HandlerFn | None = None

    # --- decorators ------------------------------------------------------------------------------

    def command(self, *names: str) -> Callable[[F], F]:
        """Text starting with one of the commands (``/order``; case-insensitive, ``@botname`` ignored);
        ``turn.args`` holds the rest of the text."""
        wanted = {n.lower() if n.startswith("/") else "/" + n.lower() for n in names}

        def matches(turn: Turn) -> bool:
            return turn.kind == "text" and _command_word(turn.text)[0] in wanted

        return self._add(matches, command=next(iter(wanted)))

    def text(self, *texts: str) -> Callable[[F], F]:
        """Text equal to one of ``texts``, ignoring case and surrounding spaces."""
        wanted = {t.strip().casefold() for t in texts}
        return self._add(lambda turn: turn.kind == "text" and turn.text.casefold() in wanted)

    def regex(self, pattern: str | re.Pattern[str], flags: int = re.IGNORECASE) -> Callable[[F], F]:
        """Text in which ``pattern`` is found (``re.search``); ``turn.match`` holds the match."""
        compiled = re.compile(pattern, flags) if isinstance(pattern, str) else pattern
        return self._add(lambda turn: turn.kind == "text" and compiled.search(turn.text) is not None, compiled)

    def button(self, *ids: str) -> Callable[[F], F]:
        """An interactive reply (button, list row, template quick reply) whose id is one of ``ids``;
        an id ending in ``*`` matches by prefix (``"size:*"``)."""
        exact = {i for i in ids if not i.endswith("*")}
        prefixes = tuple(i[:-1] for i in ids if i.endswith("*"))

        def matches(turn: Turn) -> bool:
            chosen = turn.button_id
            return chosen is not None and (chosen in exact or (bool(prefixes) and chosen.startswith(prefixes)))

        return self._add(matches)

    def kind(self, *kinds: str) -> Callable[[F], F]:
        """A message of one of these kinds (``image``, ``location``, ``document``, ...)."""
        wanted = set(kinds)
        return self._add(lambda turn: turn.kind in wanted)

    def when(self, predicate: Predicate) -> Callable[[F], F]:
        """Any test of the turn, e.g. a step of a flow: ``@router.when(lambda t: t.state.get("step") == "qty")``."""
        return self._add(predicate)

    def fallback(self, fn: F) -> F:
        """What answers when no route of this router (nor an included one) did."""
        self._fallback = fn
        return fn

    def include(self, router: Router) -> None:
        """Try ``router`` (its routes and fallback) after the routes added so far."""
        self._routes.append(router)

    def _add(self, matches: Predicate, pattern: re.Pattern[str] | None = None, *,
             command: str | None = None) -> Callable[[F], F]:
        def register(fn: F) -> F:
            self._routes.append(Route(matches, fn, pattern, command))
            return fn

        return register

    # --- handling --------------------------------------------------------------------------------

    async def handle(self, turn: Turn) -> BotAnswer:
        """The answer of the first route that matches and answers, else the fallback's, else None."""
        for route in self._routes:
            if isinstance(route, Router):
                answer = await route.handle(turn)
            elif route.matches(turn):
                if route.pattern is not None:
                    turn.match = route.pattern.search(turn.text)
                if route.command is not None:
                    turn.args = _command_word(turn.text)[1]
                answer = await route.fn(turn)
            else:
                continue
            if answer is not None:
                return answer
        if self._fallback is not None:
            return await self._fallback(turn)
        return None
