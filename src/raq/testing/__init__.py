"""Test helpers: a real OpenAI-compatible fake server on loopback, with latency and faults."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["Behaviour", "FakeOpenAIServer"]

if TYPE_CHECKING:
    from raq.testing.fake_server import Behaviour, FakeOpenAIServer


def __getattr__(name: str) -> Any:
    # Lazy, so `python -m raq.testing.fake_server` does not import the module twice.
    if name in __all__:
        from raq.testing import fake_server

        return getattr(fake_server, name)
    raise AttributeError(f"module 'raq.testing' has no attribute {name!r}")
