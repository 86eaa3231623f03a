"""The ``raq`` command: a thin Typer layer over the library (``raq.cli.app``)."""

from __future__ import annotations

from raq.core import collector
from raq.core.lazy import lazy_names

__all__ = ["app", "main"]


def main() -> None:
    """Console-script entry point. The command's imports run with the cyclic garbage collector
    paused (raq.core.collector); each command resumes it before it starts its work."""
    collector.own_process()
    collector.pause()
    from raq.cli.app import main as command

    command()


# The Typer app loads on first use, so that main can pause the collector first.
__getattr__ = lazy_names(__name__, {"app": "raq.cli.app"})
