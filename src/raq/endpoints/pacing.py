"""Pace requests to an endpoint's rate limit, learned from its answers.

Hosted endpoints (OpenAI, NVIDIA NIM, gateways such as litellm) refuse requests beyond a rate
with HTTP 429, count the refused ones against the caller, and some escalate. Halving the
concurrency on a 429 does not help: a rate limit counts requests per second, not requests in
flight. A ``Pacer`` learns the rate and spaces the requests to it. There is one pacer per
endpoint identity (base URL and API key), shared by every candidate and judge that uses it,
because that is what a provider counts.

What it learns from:

- **Rate-limit headers** (OpenAI, litellm, Groq, Together, …): ``x-ratelimit-limit-requests``,
  ``x-ratelimit-remaining-requests`` and ``x-ratelimit-reset-requests`` (the time until the
  bucket is full again: ``"1s"``, ``"6m0s"``, ``"12ms"``), and the ``-tokens`` variants. A
  refilling bucket that lacks ``limit - remaining`` units and is full again in ``reset``
  seconds refills at ``(limit - remaining) / reset`` units a second; ``remaining`` is rounded
  down, so ``(limit - remaining - 1) / reset`` is a lower bound (the best of the last 10 s is
  used). The pacer runs the server's bucket forward from the last response: what it said
  remained, plus the refill since, minus what raq sent after that request. A request waits
  until that bucket holds what it needs, and every response corrects it, so the server's own
  burst is used and errors in the rate do not add up.
- **429s alone** (no headers): a refused request means the server's bucket was empty when it
  arrived. Between two such moments the server accepted what it refilled, so the requests it
  accepted after a refused one, over the time since, give a lower bound on its rate
  (``(accepted - 1) / seconds``), exact while raq sends faster than the limit. After the first
  429 the pace starts at what was accepted in the last second, its first request one interval
  later (the bucket is empty; at once when none was accepted), and doubles every
  ``_RAMP_DOUBLING_S`` until the next refusal, then steps back; afterwards each refusal cuts the
  pace by 10 % (never below the lower bound) and a quiet spell lets it grow 5 % a second, so it
  settles just under the limit and follows it if the limit changes. Refusals of requests sent
  before pacing began (the first window meeting the empty bucket) change nothing, and never
  count as an endpoint that refuses everything.
- Until the first refusal, requests go out in windows, as TCP's slow start sends them: first
  ``initial_window``, and the next window, twice as large, only once as many requests as the
  windows so far held were accepted (and none refused); the window also doubles as time
  passes, for a server slow to answer or one that never does. Requests the doubling let out
  are not waited for: against a server that answers in about that time, waiting for them held
  the whole window back one more answer time. An endpoint whose limit is unknown is not met
  with a burst of ``concurrency`` requests (against a gateway that refuses within
  milliseconds, 8 instead of 32 in the benchmark). A window opens on the
  whole previous one, not on each answer: a server that answers at once returns the 200s of
  a window before the 429s of the requests behind them, and requests released by those 200s
  would all meet the empty bucket.
- **How often the window doubles with no answer** depends on how soon a refusal could come
  back. A refusal takes a few network round trips (the connection, TLS, the request), not an
  answer's time: many servers send their response headers only with the first token, so an
  accepted request can be silent for seconds while a refused one would have answered in
  milliseconds. Until the round trip is known the window doubles every
  ``_WINDOW_DOUBLING_S``; ``raq.endpoints.round_trip`` times a TCP connection to the endpoint
  at its first request, and from then on the window doubles every time a refusal needs (10 ms
  on loopback, where waiting 0.1 s a doubling cost a run whose answers take 0.1 s another
  0.1 s at its start; still 0.1 s for a hosted endpoint 25 ms or more away).

``Retry-After`` is honoured for the refused request itself by the client's retry; the pacer
does not stop every request for it, because servers round it up to whole seconds (a token
bucket's 50 ms wait becomes ``Retry-After: 1``): holding every sender for it at each refusal
would cost a second each time, more than the pace loses to the refusal.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

# How fast the pace grows after the first 429, before the limit has been crossed again.
_RAMP_DOUBLING_S = 0.5
# A refusal met while ramping: step back to this share of the pace.
_RAMP_CUT = 0.85
# A later refusal: cut the pace to this share (never below the lower bound).
_DECREASE = 0.9
# The slowest learned pace.
_MIN_PER_S = 1.0
# Refusals without a single accepted request since pacing began: not a rate the pacer can
# meet (a spent quota, a server refusing everything); it stops pacing and leaves the requests
# to the client's backoff until a request is accepted again, so they fail, and the endpoint
# is given up, in reasonable time.
_HOPELESS_REFUSALS = 8
# Without a refusal for this long, the pace grows by _GROWTH_PER_S, as long as raq sent at
# least _KEPT_UP of it over the last _KEPT_UP_SPAN_S.
_QUIET_S = 2.0
_GROWTH_PER_S = 0.05
_KEPT_UP = 0.9
_KEPT_UP_SPAN_S = 1.0
# The shortest span between a refusal and a later one that bounds the rate.
_MIN_SPAN_S = 0.5
# Requests remembered for the bound.
_HISTORY_S = 30.0
_HISTORY_LENGTH = 4096
# Until an endpoint first answers, its window of requests doubles this often, or as often as
# a refusal could come back once its round trip is known, but not more often than
# _MIN_WINDOW_DOUBLING_S.
_WINDOW_DOUBLING_S = 0.1
_MIN_WINDOW_DOUBLING_S = 0.01
# A window doubled this often (2 s without an answer, or fewer with answers) no longer binds.
_OPEN_DOUBLINGS = 20
# How long a rate bound read from headers is kept.
_BOUND_MEMORY_S = 10.0


def pacer_key(base_url: str, api_key: str | None) -> tuple[str, str]:
    """What a provider counts a limit against: the URL and the key (hashed, never kept)."""
    digest = hashlib.sha256(api_key.encode()).hexdigest()[:16] if api_key else ""
    return base_url.rstrip("/").lower(), digest


_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(h|ms|m|s|us|µs|ns)")
_UNIT_S = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}


def parse_duration_s(text: str | None) -> float | None:
    """Seconds in a reset header: Go durations (``"1s"``, ``"6m0s"``, ``"20ms"``,
    ``"1h2m3.5s"``) or a plain number of seconds; None when it is neither."""
    if text is None:
        return None
    value = text.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return seconds if seconds >= 0 else None
    position, total = 0, 0.0
    for match in _DURATION_PART.finditer(value):
        if match.start() != position:
            return None
        total += float(match.group(1)) * _UNIT_S[match.group(2)]
        position = match.end()
    return total if position == len(value) and position else None


@dataclass(frozen=True)
class BucketState:
    """One of a server's buckets as its headers describe it (requests or tokens)."""

    limit: float
    remaining: float
    reset_s: float

    def rate_lower_bound(self) -> float | None:
        """Units a second the bucket refills at, at least; None when it cannot be told."""
        if self.reset_s <= 0 or self.limit - self.remaining < 2:
            return None
        return (self.limit - self.remaining - 1) / self.reset_s


_HEADER_NAMES = {
    unit: tuple(f"x-ratelimit-{part}-{unit}" for part in ("limit", "remaining", "reset"))
    for unit in ("requests", "tokens")
}


def bucket_from_headers(headers: Mapping[str, str], unit: str) -> BucketState | None:
    """The ``x-ratelimit-*-{unit}`` bucket (unit: requests or tokens), if all three are sent."""
    names = _HEADER_NAMES[unit]
    limit_text = headers.get(names[0])
    if limit_text is None:  # most servers: no rate-limit headers at all
        return None
    try:
        limit = float(limit_text)
        remaining = float(headers.get(names[1], ""))
    except ValueError:
        return None
    reset = parse_duration_s(headers.get(names[2]))
    if reset is None or limit <= 0 or remaining < 0:
        return None
    return BucketState(limit, min(remaining, limit), reset)


class Ticket:
    """One request sent under a pacer: when, how much, and whether the server refused it."""

    __slots__ = ("refused", "requests_through", "sent_at", "tokens", "tokens_through")

    def __init__(self, sent_at: float, requests_through: int, tokens: int, tokens_through: int):
        self.sent_at = sent_at
        self.requests_through = requests_through  # requests sent up to and with this one
        self.tokens = tokens
        self.tokens_through = tokens_through
        self.refused: bool | None = None  # None until its response arrives


class _Spacing:
    """A learned rate as a schedule (GCRA): each send moves the earliest next one by 1/rate."""

    def __init__(self) -> None:
        self.per_s: float | None = None
        self.next_at = 0.0

    def delay_s(self, now: float) -> float:
        return 0.0 if self.per_s is None else max(0.0, self.next_at - now)

    def take(self, now: float) -> None:
        if self.per_s is not None:
            self.next_at = max(self.next_at, now) + 1.0 / self.per_s

    def binding(self, now: float) -> bool:
        """Whether requests are waiting on this rate (the only time to raise it)."""
        return self.per_s is not None and self.next_at >= now - 1.0 / self.per_s


class _Mirror:
    """A server bucket as its headers last described it, run forward: what it holds now is
    what it said it held, plus its refill since, minus what raq sent after that request.
    Each response corrects it, so an estimate that is off does not add up."""

    def __init__(self) -> None:
        self.bucket: BucketState | None = None
        self.at = 0.0
        self.through = -1
        # (when, rate lower bound), each bound greater than those after it: the front is the
        # best bound of the last _BOUND_MEMORY_S, whatever the rate of responses.
        self._bounds: deque[tuple[float, float]] = deque()

    def update(self, bucket: BucketState, sent_at: float, through: int, now: float) -> None:
        bound = bucket.rate_lower_bound()
        if bound is not None:
            while self._bounds and self._bounds[-1][1] <= bound:
                self._bounds.pop()
            self._bounds.append((now, bound))
        while self._bounds and self._bounds[0][0] < now - _BOUND_MEMORY_S:
            self._bounds.popleft()
        if through > self.through:  # not older news than what it holds
            self.bucket, self.at, self.through = bucket, sent_at, through

    @property
    def per_s(self) -> float | None:
        """The refill rate: the best lower bound of late, else what the last reset implies."""
        if self._bounds:
            return self._bounds[0][1]
        bucket = self.bucket
        if bucket is None or bucket.reset_s <= 0 or bucket.limit <= bucket.remaining:
            return None
        return (bucket.limit - bucket.remaining) / bucket.reset_s

    def delay_s(self, now: float, units: float, later: list[tuple[float, float]]) -> float:
        """How long until the bucket holds ``units``, given what was sent after the request
        it was last told about (``later``: send times and units, oldest first)."""
        bucket = self.bucket
        if bucket is None:
            return 0.0
        rate = self.per_s
        if rate is None:  # nothing to tell the refill by: full again after its reset
            full_at = self.at + max(bucket.reset_s, 1.0)
            if now < full_at:
                return max(0.01, full_at - now)
            return 0.0
        level, then = bucket.remaining, self.at
        for sent_at, taken in later:
            level = min(bucket.limit, level + rate * max(0.0, sent_at - then)) - taken
            then = max(then, sent_at)
        level = min(bucket.limit, level + rate * max(0.0, now - then))
        need = min(units, bucket.limit)
        return 0.0 if level >= need else (need - level) / rate


class Pacer:
    """The shared pace of one endpoint identity; see the module docstring.

    The client calls ``before_request`` before each attempt (it waits for the pace and
    returns a ticket) and ``on_response`` with the ticket, status and headers when the
    response's headers arrive.
    """

    def __init__(
        self,
        *,
        initial_window: int = 8,
        clock: Callable[[], float] = time.monotonic,
        refusal_time: Callable[[], Awaitable[float | None]] | None = None,
    ) -> None:
        """``refusal_time``: measures, at the first request, how soon a refusal could come
        back (``raq.endpoints.round_trip``), so the window doubles that often."""
        self._clock = clock
        self._initial_window = initial_window
        self._refusal_time = refusal_time
        self._refusal_time_task: asyncio.Task[None] | None = None
        self._doubling_s = _WINDOW_DOUBLING_S
        self._time_doublings = 0  # doublings of the window that time alone allowed
        self._next_doubling_at: float | None = None
        self._spacing = _Spacing()
        self._request_mirror = _Mirror()
        self._token_mirror = _Mirror()
        self._sends: deque[Ticket] = deque(maxlen=_HISTORY_LENGTH)
        self._lock = asyncio.Lock()
        self._accepted = 0  # responses that were not refused
        self._rounds = 0  # rounds of the window answered without a refusal
        self._round_base = 0  # requests accepted before the current round
        self._answered = asyncio.Event()  # set (and replaced) at a response, if anyone waits
        self._gate_waiters = 0
        self._window_open = False  # the window has grown past any concurrency: no more checks
        self._phase = "unknown"  # unknown | ramp | steady
        self._since = 0.0  # refusals of requests sent before this do not change the pace
        self._ramp_guard_s = 0.0
        self._last_refusal = float("-inf")
        self._grown_at = 0.0
        self._kept_up = False  # whether raq sent at the pace over the last span
        self._kept_up_at = 0.0
        self._kept_up_sent = 0
        self._tokens_sent = 0
        self._paced_since = 0.0
        self._refused_while_paced = 0
        self._hopeless = False
        self.sent = 0
        self.refused = 0

    # -- what the client calls ----------------------------------------------------------------

    async def before_request(self, tokens: int = 0) -> Ticket:
        """Wait until the pace allows one more request of about ``tokens`` tokens; take it."""
        if self._refusal_time is not None and self._refusal_time_task is None:
            self._refusal_time_task = asyncio.create_task(self._measure_refusal_time())
        while (
            not self._window_open
            and not self.paced
            and self.sent >= self._round_base + self._window()
        ):
            # The window also grows with no answer at all: a request that fails without a
            # response (a refused connection) never answers.
            assert self._next_doubling_at is not None
            self._gate_waiters += 1
            try:
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for returns the answer of
                # a wait cancelled in the same step, and the cancellation (Ctrl-C) is lost.
                with contextlib.suppress(TimeoutError):
                    wait_s = max(0.001, self._next_doubling_at - self._clock())
                    async with asyncio.timeout(wait_s):
                        await self._answered.wait()
            finally:
                self._gate_waiters -= 1
        if not self.paced:
            return self._record(tokens)
        async with self._lock:  # first come, first served
            while (wait := self._delay_s(tokens)) > 0:
                await asyncio.sleep(wait)
            return self._record(tokens)

    def on_response(self, ticket: Ticket, status: int, headers: Mapping[str, str]) -> None:
        """Learn from a response's status and headers (called when the headers arrive)."""
        now = self._clock()
        ticket.refused = status == 429
        self._accepted += not ticket.refused
        round_end = self._round_base + self._initial_window * 2**self._rounds
        if self._accepted >= round_end and not self.refused:  # the round all accepted
            self._rounds += 1
            self._round_base = round_end
        self._wake_gate_waiters()
        told = False
        for mirror, unit, through in (
            (self._request_mirror, "requests", ticket.requests_through),
            (self._token_mirror, "tokens", ticket.tokens_through),
        ):
            bucket = bucket_from_headers(headers, unit)
            if bucket is not None:
                mirror.update(bucket, ticket.sent_at, through, now)
                told = True
        if ticket.refused:
            self.refused += 1
            if not told:
                self._learn_from_refusal(ticket, now)
            self._last_refusal = now
        else:
            self._hopeless = False

    # -- what it knows --------------------------------------------------------------------------

    @property
    def paced(self) -> bool:
        """Whether requests wait for a learned rate or for the server's declared bucket."""
        return (
            self._spacing.per_s is not None
            or self._request_mirror.bucket is not None
            or self._token_mirror.bucket is not None
        )

    @property
    def window_doubling_s(self) -> float:
        """How often the window doubles while no answer comes."""
        return self._doubling_s

    @property
    def requests_per_minute(self) -> float | None:
        """The pace in requests per minute (learned, else declared), or None if unknown."""
        rate = self._spacing.per_s or self._request_mirror.per_s
        return None if rate is None else 60 * rate

    # -- what else it is told ------------------------------------------------------------------

    def learn_refusal_time(self, seconds: float) -> None:
        """A refusal would come back within about ``seconds``: without answers, the window
        doubles that often (within _MIN_WINDOW_DOUBLING_S and _WINDOW_DOUBLING_S)."""
        self._doubling_s = min(_WINDOW_DOUBLING_S, max(_MIN_WINDOW_DOUBLING_S, seconds))
        if self._next_doubling_at is not None:  # the next doubling: one new interval at most
            self._next_doubling_at = min(self._next_doubling_at, self._clock() + self._doubling_s)
        self._wake_gate_waiters()

    async def aclose(self) -> None:
        """Stop measuring the round trip, if that still runs (the client is closing)."""
        task = self._refusal_time_task
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # -- internals ------------------------------------------------------------------------------

    async def _measure_refusal_time(self) -> None:
        assert self._refusal_time is not None
        try:
            seconds = await self._refusal_time()
        except Exception:  # only an accelerator: the window keeps doubling every 0.1 s
            return
        if seconds is not None:
            self.learn_refusal_time(seconds)

    def _wake_gate_waiters(self) -> None:
        """Requests waiting on the window look at it again."""
        if self._gate_waiters:
            self._answered.set()
            self._answered = asyncio.Event()

    def _window(self) -> float:
        """Requests allowed in the current round before pacing: the initial window, doubled
        for each round all accepted and each time the doubling interval passed."""
        if self._next_doubling_at is not None:
            now = self._clock()
            while now >= self._next_doubling_at and self._time_doublings < _OPEN_DOUBLINGS:
                self._time_doublings += 1
                self._next_doubling_at += self._doubling_s
        doublings = self._rounds + self._time_doublings
        if doublings >= _OPEN_DOUBLINGS:
            self._window_open = True
        return self._initial_window * 2 ** min(doublings, _OPEN_DOUBLINGS)

    def _record(self, tokens: int) -> Ticket:
        now = self._clock()
        if self._next_doubling_at is None:  # the first request: time starts doubling
            self._next_doubling_at = now + self._doubling_s
        self._spacing.take(now)
        self.sent += 1
        self._tokens_sent += tokens
        ticket = Ticket(now, self.sent, tokens, self._tokens_sent)
        self._sends.append(ticket)
        return ticket

    def _delay_s(self, tokens: int) -> float:
        now = self._clock()
        self._grow(now)
        wait = self._spacing.delay_s(now)
        requests, tokens_mirror = self._request_mirror, self._token_mirror
        if requests.bucket is not None:
            later = [(t.sent_at, 1.0) for t in self._sent_after(requests.through, "requests")]
            wait = max(wait, requests.delay_s(now, 1, later))
        if tokens_mirror.bucket is not None:
            later = [
                (t.sent_at, float(t.tokens))
                for t in self._sent_after(tokens_mirror.through, "tokens")
            ]
            wait = max(wait, tokens_mirror.delay_s(now, tokens, later))
        return wait

    def _sent_after(self, through: int, unit: str) -> list[Ticket]:
        """The tickets sent after the one whose running total was ``through``, oldest first."""
        out: list[Ticket] = []
        for ticket in reversed(self._sends):
            total = ticket.requests_through if unit == "requests" else ticket.tokens_through
            if total <= through:
                break
            out.append(ticket)
        out.reverse()
        return out

    def _grow(self, now: float) -> None:
        elapsed, self._grown_at = now - self._grown_at, now
        spacing = self._spacing
        if spacing.per_s is None or not spacing.binding(now):
            return
        if self._phase == "ramp":
            spacing.per_s *= 2 ** (elapsed / _RAMP_DOUBLING_S)
        elif now - self._last_refusal > _QUIET_S and self._pace_kept_up(now, spacing.per_s):
            spacing.per_s *= 1 + _GROWTH_PER_S * elapsed

    def _pace_kept_up(self, now: float, per_s: float) -> bool:
        """Whether raq sent at about the pace over the last span. A pace raq does not reach
        (its process is busy, or the answers come too slowly) tells nothing about the limit;
        raised untested, it would let raq burst above the limit once it can keep up."""
        span = now - self._kept_up_at
        if span >= _KEPT_UP_SPAN_S:
            self._kept_up = self.sent - self._kept_up_sent >= _KEPT_UP * per_s * span
            self._kept_up_at, self._kept_up_sent = now, self.sent
        return self._kept_up

    def _learn_from_refusal(self, ticket: Ticket, now: float) -> None:
        spacing = self._spacing
        if self._hopeless:
            return
        if spacing.per_s is None:
            # The first refusal: start from what the server accepted in the last second.
            accepted = sum(
                1 for t in self._sends if not t.refused and t.sent_at > ticket.sent_at - 1.0
            )
            spacing.per_s = max(_MIN_PER_S, float(accepted))
            # The bucket is empty: a request sent at once would meet it empty too. Without an
            # accepted request the pace is only the floor, no measure of the refill: waiting
            # a whole second of it would override the client's own backoff (``retry_max_s``).
            spacing.next_at = now + 1.0 / spacing.per_s if accepted else now
            self._paced_since, self._refused_while_paced = now, 0
            self._phase, self._since, self._grown_at = "ramp", now, now
            # Requests sent just after the burst meet an empty bucket too; only a refusal
            # of one sent a while into the ramp says the ramp crossed the limit.
            self._ramp_guard_s = min(0.25, 2.0 / spacing.per_s)
            return
        if ticket.sent_at >= self._paced_since:
            self._refused_while_paced += 1
        if self._refused_while_paced >= _HOPELESS_REFUSALS and self._all_refused_since_paced():
            spacing.per_s, self._phase, self._hopeless = None, "unknown", True
            self._refused_while_paced = 0
            return
        if ticket.sent_at < self._since:
            return  # sent at the old pace, already answered for
        if self._phase == "ramp" and ticket.sent_at < self._since + self._ramp_guard_s:
            return
        lower = self._lower_bound(ticket.sent_at)
        # Far above the limit most requests are refused: cut by the share accepted.
        cut = min(_RAMP_CUT if self._phase == "ramp" else _DECREASE, self._accepted_share())
        spacing.per_s = max(lower, spacing.per_s * cut, _MIN_PER_S)
        self._phase = "steady"
        self._since = now

    def _accepted_share(self) -> float:
        """The share of requests sent since the last change of pace that were not refused
        (one without an answer yet counts as accepted); 1 with too few to tell."""
        sent = refused = 0
        for ticket in reversed(self._sends):
            if ticket.sent_at < self._since:
                break
            sent += 1
            refused += bool(ticket.refused)
        return max(0.1, 1 - refused / sent) if sent >= 4 else 1.0

    def _all_refused_since_paced(self) -> bool:
        """Whether every request sent since pacing began was refused (none still waiting)."""
        for ticket in reversed(self._sends):
            if ticket.sent_at < self._paced_since:
                return True
            if not ticket.refused:  # accepted, or no answer yet
                return False
        return True

    def _lower_bound(self, end: float) -> float:
        """The server's rate is at least (accepted − 1) / span after any refusal before
        ``end`` (its bucket was empty then, and refills at most its rate since)."""
        best = 0.0
        accepted = 0
        for ticket in reversed(self._sends):
            if ticket.sent_at >= end:
                continue
            if ticket.sent_at < end - _HISTORY_S:
                break
            if ticket.refused:
                span = end - ticket.sent_at
                if span >= _MIN_SPAN_S:
                    best = max(best, (accepted - 1) / span)
            else:
                accepted += 1  # a request still without an answer is counted as accepted
        return best
