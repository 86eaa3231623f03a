"""The ``raq`` command: a thin Typer layer over the library (``raq.cli.app``)."""

from raq.cli.app import app, main

__all__ = ["app", "main"]
