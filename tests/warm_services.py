"""Start the suite's local broker and registry ahead of pytest, or stop them again.

``scripts/test`` runs ``python -m tests.warm_services start`` in the background while ruff, mypy, vulture
and pytest's collection run, so the tests find the services answering instead of waiting about 17 s for
them; under the run's id (``BEACON_TEST_RUN``), so the run stops them at its end as if it had started them
itself. ``scripts/test`` calls ``stop`` when it ends: it stops what the warm-up started and pytest did not
(a lint failure before pytest; a run too short to reach its end before the services were up).
"""

from __future__ import annotations

import sys

from tests.conftest import start_local_services, stop_what_this_run_started


def main(argv: list[str]) -> int:
    if argv == ["start"]:
        start_local_services()
    elif argv == ["stop"]:
        stop_what_this_run_started()
    else:
        print("usage: python -m tests.warm_services start|stop", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
