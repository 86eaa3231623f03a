"""How soon an endpoint could refuse: a timed TCP connection, over loopback."""

from __future__ import annotations

import socket

import pytest

from raq.endpoints.round_trip import refusal_time_s
from raq.testing import FakeOpenAIServer


async def test_an_open_endpoint_has_a_refusal_time() -> None:
    with FakeOpenAIServer() as server:
        seconds = await refusal_time_s(server.base_url)
        assert seconds is not None and 0 < seconds < 2.0
        assert server.count() == 0  # a connection only: no request reached the server


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(
    "base_url",
    [
        f"http://127.0.0.1:{_closed_port()}/v1",  # nothing listens
        "ftp://127.0.0.1/v1",  # not HTTP
        "http:///v1",  # no host
        "http://127.0.0.1:99999/v1",  # no such port
    ],
)
async def test_no_connection_means_no_refusal_time(base_url: str) -> None:
    assert await refusal_time_s(base_url) is None
