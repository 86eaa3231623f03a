"""``python -m raq`` is the ``raq`` command."""

from raq.cli import main

main()
