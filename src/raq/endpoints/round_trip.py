"""How soon an endpoint could refuse a request: its network round trip, timed once.

The pacer's window (``raq.endpoints.pacing``) doubles, while no answer has come, as often as
a refusal could come back. That is a few round trips, not an answer's time: a new connection
(TCP, and TLS for https) and the request itself. A TCP connection to the endpoint's host and
port takes about one round trip (and a DNS lookup, if not cached), so it is what is timed.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from urllib.parse import urlsplit

# Round trips before a refusal on a new connection: TCP's handshake and the request, and for
# https TLS's handshake (up to two round trips) in between.
_ROUND_TRIPS = {"http": 2, "https": 4}
# The server's own time to refuse, on top of the network's.
_SERVER_S = 0.005
_CONNECT_TIMEOUT_S = 2.0


async def refusal_time_s(base_url: str) -> float | None:
    """About how soon a request to ``base_url`` could be refused, or None when no TCP
    connection opens (the requests themselves then report why)."""
    url = urlsplit(base_url)
    round_trips = _ROUND_TRIPS.get(url.scheme)
    if round_trips is None or not url.hostname:
        return None
    try:
        port = url.port or (443 if url.scheme == "https" else 80)
    except ValueError:  # a port out of range: the requests say so
        return None
    started = time.perf_counter()
    try:
        async with asyncio.timeout(_CONNECT_TIMEOUT_S):
            _, writer = await asyncio.open_connection(url.hostname, port)
    except (OSError, TimeoutError, UnicodeError):
        return None
    connect_s = time.perf_counter() - started
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return _SERVER_S + round_trips * connect_s
