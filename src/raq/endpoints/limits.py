"""How hard raq presses one endpoint: a concurrency limit that adapts to 429s, client-side
requests and tokens per minute, and the state the client keeps per endpoint (those limits, the
shared pacer, counters and whether it was disabled).

The pacer that learns a server's own rate limit is raq.endpoints.pacing; this module holds the
limits raq sets itself and the per-endpoint record that ties them together.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from raq.endpoints.endpoint import Endpoint
from raq.endpoints.pacing import Pacer


class _AdaptiveLimiter:
    """A concurrency limit that halves on 429 and grows back by one per window of successes."""

    def __init__(self, maximum: int) -> None:
        self.maximum = maximum
        self.limit = maximum
        self.in_flight = 0
        self._successes = 0
        self._changed = asyncio.Condition()

    async def acquire(self) -> None:
        async with self._changed:
            await self._changed.wait_for(lambda: self.in_flight < self.limit)
            self.in_flight += 1

    async def release(self, *, throttled: bool) -> None:
        async with self._changed:
            self.in_flight -= 1
            if throttled:
                self.limit = max(1, self.limit // 2)
                self._successes = 0
            elif self.limit < self.maximum:
                self._successes += 1
                if self._successes >= self.limit:
                    self.limit += 1
                    self._successes = 0
            self._changed.notify_all()


class _Bucket:
    """A token bucket refilled continuously; it holds one second's worth (at least 1)."""

    def __init__(self, per_minute: float) -> None:
        self.per_second = per_minute / 60
        self.capacity = max(1.0, self.per_second)
        self.level = self.capacity
        self.updated = time.monotonic()

    def wait_s(self, need: float) -> float:
        """Take ``need`` if available (0 returned), else how long until it will be."""
        now = time.monotonic()
        self.level = min(self.capacity, self.level + (now - self.updated) * self.per_second)
        self.updated = now
        need = min(need, self.capacity)
        if self.level >= need:
            self.level -= need
            return 0.0
        return (need - self.level) / self.per_second


class _RateLimiter:
    """Requests and tokens per minute, client-side (tokens estimated before, debited after).

    Buckets hold one second's worth, so a limit is not broken by an opening burst even where a
    provider enforces it over short windows.
    """

    def __init__(self, requests_per_minute: float | None, tokens_per_minute: float | None) -> None:
        self.requests = _Bucket(requests_per_minute) if requests_per_minute else None
        self.tokens = _Bucket(tokens_per_minute) if tokens_per_minute else None
        self._lock = asyncio.Lock()

    async def acquire(self, tokens: int) -> None:
        if self.requests is None and self.tokens is None:
            return
        async with self._lock:
            for bucket, need in ((self.requests, 1), (self.tokens, tokens)):
                while bucket is not None and (wait := bucket.wait_s(need)) > 0:
                    await asyncio.sleep(wait)

    def debit_tokens(self, tokens: int) -> None:
        if self.tokens is not None:
            self.tokens.level -= tokens


@dataclass
class EndpointCounters:
    requests: int = 0
    cache_hits: int = 0
    retries: int = 0
    failures: int = 0
    throttled: int = 0


class EndpointState:
    def __init__(self, endpoint: Endpoint, default_concurrency: int, pacer: Pacer) -> None:
        self.limiter = _AdaptiveLimiter(endpoint.concurrency or default_concurrency)
        self.rate = _RateLimiter(endpoint.requests_per_minute, endpoint.tokens_per_minute)
        self.pacer = pacer  # shared by every endpoint on the same URL and key
        self.consecutive_failures = 0
        self.disabled_reason: str | None = None
        self.stream_options_ok = True
        self.counters = EndpointCounters()
