"""The ``raq`` command: a thin Typer layer over the library (``raq.cli.app``)."""

from __future__ import annotations

from typing import Any

from raq.core import collector

__all__ = ["app", "main"]


def main() -> None:
    """Console-script entry point. The command's imports run with the cyclic garbage collector
    paused (raq.core.collector); each command resumes it before it starts its work."""
    collector.own_process()
    collector.pause()
    from raq.cli.app import main as command

    command()


def __getattr__(name: str) -> Any:
    if name == "app":  # the Typer app, loaded on first use so that main can pause first
        from raq.cli.app import app

        return app
    raise AttributeError(f"module 'raq.cli' has no attribute {name!r}")
