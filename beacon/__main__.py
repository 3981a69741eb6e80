"""``python -m beacon`` is the ``beacon`` command."""

from beacon.cli import main

main()
