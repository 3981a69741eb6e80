"""``python -m beacon.bench.bare ROLE``: one process of the bare topology (see :mod:`beacon.bench.bare.parts`)."""

from beacon.bench.bare.parts import main

main()
