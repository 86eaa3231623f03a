"""A token bucket in front of the fake server, as a provider's gateway keeps one: it refuses
with 429 and Retry-After, and can send OpenAI's ``x-ratelimit-*`` headers on every response.

Shared by every model the server answers, unlike a ``Behaviour``'s faults, so raq's pacing is
tested against a limit it must learn rather than a scripted sequence.
"""

from __future__ import annotations

import math
import time

from aiohttp import web


class RateLimit:
    """A token bucket in front of every chat request, as a provider's gateway keeps one.

    ``per_second`` tokens refill continuously up to ``burst``; a request takes one. Without a
    token the request is refused before it is read further: 429 with ``Retry-After`` in whole
    seconds, rounded up (RFC 9110's form, which is what hosted endpoints send). With
    ``headers=True`` every response also carries OpenAI's ``x-ratelimit-limit-requests``
    (the bucket's size), ``x-ratelimit-remaining-requests`` (whole tokens left) and
    ``x-ratelimit-reset-requests`` (time until the bucket is full, as ``"250ms"``, ``"1.5s"``).
    ``refused`` and ``accepted`` count the requests on each side of it.
    """

    def __init__(self, per_second: float, burst: float = 1.0, *, headers: bool = False) -> None:
        if per_second <= 0 or burst < 1:
            raise ValueError("a rate limit needs per_second > 0 and burst >= 1")
        self.per_second = per_second
        self.burst = burst
        self.headers = headers
        self.level = burst
        self.updated = time.monotonic()
        self.refused = 0
        self.accepted = 0

    def take(self) -> tuple[bool, dict[str, str]]:
        """(accepted, headers to send) for one request arriving now."""
        now = time.monotonic()
        self.level = min(self.burst, self.level + (now - self.updated) * self.per_second)
        self.updated = now
        accepted = self.level >= 1
        if accepted:
            self.level -= 1
            self.accepted += 1
        else:
            self.refused += 1
        headers: dict[str, str] = {}
        if not accepted:
            headers["Retry-After"] = str(math.ceil((1 - self.level) / self.per_second))
        if self.headers:
            headers["x-ratelimit-limit-requests"] = f"{self.burst:g}"
            headers["x-ratelimit-remaining-requests"] = str(math.floor(self.level))
            full_in = (self.burst - self.level) / self.per_second
            headers["x-ratelimit-reset-requests"] = go_duration(full_in)
        return accepted, headers


def go_duration(seconds: float) -> str:
    """A duration as OpenAI's headers write it (Go's form): ``"12ms"``, ``"1.5s"``, ``"6m0s"``."""
    if seconds < 1:
        return f"{math.ceil(seconds * 1000)}ms"
    minutes, rest = divmod(seconds, 60)
    text = f"{rest:.3f}".rstrip("0").rstrip(".") + "s"
    return f"{int(minutes)}m{text}" if minutes else text


# Where the server leaves a request's headers from ``RateLimit.take`` for the response.
RATE_LIMIT_HEADERS = web.RequestKey("rate_limit_headers", dict[str, str])


async def add_rate_limit_headers(request: web.BaseRequest, response: web.StreamResponse) -> None:
    """Put the rate limit's headers on whatever response the request gets."""
    response.headers.update(request.get(RATE_LIMIT_HEADERS) or {})
