"""``python -m raq`` is the ``raq`` command."""

from raq.cli.app import main

main()
