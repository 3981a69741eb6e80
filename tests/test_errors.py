"""One error root: every exception class Beacon defines descends from BeaconError (``beacon/errors.py``),
except the few named here with the reason; and errors say whether they are retryable."""

from __future__ import annotations

import ast
import builtins
from pathlib import Path

from beacon.errors import BadMessageError, BeaconError, RegistryError, RegistryUnavailableError, ServiceError

PACKAGE = Path(__file__).resolve().parents[1] / "beacon"

#: Exceptions that are deliberately not BeaconErrors, and why (``except BeaconError`` must not catch them).
OUTSIDE = {
    "LeaveUnfinished": "control flow of the keyed lanes (stop without settling), not a failure",
    "Abandoned": "a LeaveUnfinished: shutting down while a send waited",
    "LoginRequired": "control flow of the console: answered with a redirect to the login form",
    "StateNotJson": "a bug in a user's handler (a TypeError): answered 500, while the API answers 503 to a "
                    "BeaconError (a dependency down, retried without limit)",
    "BadRequest": "the fake Bot API's own wire error (a test double of Telegram's, not Beacon's)",
    "InvalidRequest": "the fake Cloud API's own wire error (a test double of Meta's, not Beacon's)",
    "_Stale": "control flow inside beacon.http_pool (a reused connection closed before any answer): caught there, "
              "the request sent once more or raised as an HttpError; never reaches a caller",
}


def exception_classes() -> dict[str, list[str]]:
    """``module:Class`` -> its base names, for every class in the package deriving from an exception."""
    classes: dict[str, tuple[str, list[str]]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ClassDef):
                bases = [b.attr if isinstance(b, ast.Attribute) else b.id for b in node.bases
                         if isinstance(b, ast.Attribute | ast.Name)]
                classes[f"{module}:{node.name}"] = (node.name, bases)
    exceptions = {name for name, value in vars(builtins).items()
                  if isinstance(value, type) and issubclass(value, BaseException)}
    grew = True
    while grew:  # a class is an exception when a base is one (by name: good enough inside one package)
        found = {name for name, bases in classes.values() if set(bases) & exceptions}
        grew = not found <= exceptions
        exceptions |= found
    return {where: bases for where, (name, bases) in classes.items() if name in exceptions}


def test_every_exception_beacon_defines_is_a_beacon_error_or_says_why_not() -> None:
    classes = exception_classes()
    assert "beacon.api.agent:LlmError" in classes and "beacon.errors:BeaconError" in classes  # the walk sees them
    rooted = {"BeaconError"}
    grew = True
    while grew:
        found = {where.split(":")[1] for where, bases in classes.items() if set(bases) & rooted}
        grew = not found <= rooted
        rooted |= found
    stragglers = sorted(where for where in classes
                        if where.split(":")[1] not in rooted | set(OUTSIDE) and where != "beacon.errors:BeaconError")
    assert stragglers == [], f"exceptions outside beacon.errors.BeaconError: {stragglers}"


def test_retryable_is_a_class_default_an_instance_may_override() -> None:
    assert not BeaconError("x").retryable and BeaconError("x", retryable=True).retryable
    assert ServiceError("down").retryable and not ServiceError("refused", retryable=False).retryable
    assert RegistryUnavailableError("down").retryable and not RegistryError("refused", status=404).retryable
    assert not BadMessageError("bad bytes").retryable
