"""What a failed request is: the errors every caller catches, the stable kinds of an incomplete
reply, and how an HTTP error status becomes a ``RequestError`` (retryable or not, and how long
its ``Retry-After`` asks to wait).

Callers (answers, judgments, structured output, preflight) decide what a failure means from
these types and words alone, without knowing how the client reads a reply.
"""

from __future__ import annotations

import datetime
import email.utils
import json
import math
import time

import aiohttp

from raq.core.records import Completion

RETRYABLE_STATUS = {408, 409, 425, 429, 500, 502, 503, 504, 520, 522, 524, 529}

# What a reply that came back incomplete is, as the stable first word of its error (reports
# count errors by the text before the first colon). Each is retried like a dropped connection
# and never cached: an answer the server did not finish is not an answer.
INCOMPLETE_STREAM = "incomplete_stream"  # [DONE] without a finish_reason (an interrupted stream)
CUT_STREAM = "cut_stream"  # the body ended before [DONE] and without a finish_reason
EMPTY_ANSWER = "empty_answer"  # a finished reply with no text and no tool call


class RequestError(Exception):
    """A request that failed; ``retryable`` says whether trying again could help."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retryable: bool = False,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = retryable
        self.retry_after_s = retry_after_s


class EndpointDisabled(RequestError):
    """The endpoint failed too many times in a row; raq stopped calling it."""


class ThinkingUnfinished(RequestError):
    """A reasoning model's reply ended inside its thinking: cut by ``max_tokens`` while still
    thinking, or no answer after it. A failed answer of its own kind, never an empty success
    (and never cached); the endpoint works, so it does not count towards disabling it."""

    def __init__(self, message: str, completion: Completion) -> None:
        super().__init__(message)
        self.completion = completion


async def status_error(response: aiohttp.ClientResponse) -> RequestError:
    status = response.status
    try:
        text = await response.text()
    except (aiohttp.ClientError, UnicodeDecodeError):
        text = ""
    message = text.strip()[:300]
    try:
        data = json.loads(text)
        error = data.get("error", data) if isinstance(data, dict) else data
        if isinstance(error, dict):
            message = str(error.get("message") or error.get("detail") or error)[:300]
        elif isinstance(error, str):
            message = error[:300]
    except ValueError:
        pass
    retry_after = _retry_after_s(response.headers.get("Retry-After"))
    # Some servers (llama.cpp) answer a request they cannot validate with 500: retrying it
    # only repeats the refusal.
    refused_request = status == 500 and any(m in message for m in _VALIDATION_MARKERS)
    return RequestError(
        f"HTTP {status}: {message}" if message else f"HTTP {status}",
        status=status,
        retryable=status in RETRYABLE_STATUS and not refused_request,
        retry_after_s=retry_after,
    )


_VALIDATION_MARKERS = ("validation error", "literal_error", "Input should be")


def _retry_after_s(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (seconds or an HTTP date), or None to use the
    normal backoff: servers send "soon", "nan", negative or unparseable values too."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            parsed = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if parsed.tzinfo is None:  # "-0000": UTC by RFC 5322, not local time
            parsed = parsed.replace(tzinfo=datetime.UTC)
        return max(0.0, parsed.timestamp() - time.time())
    return seconds if math.isfinite(seconds) and seconds >= 0 else None
