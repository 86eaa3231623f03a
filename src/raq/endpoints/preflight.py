"""Checking each endpoint once before a run: a real one-token chat request of the run's own kind,
so a wrong key, model or URL stops the run with one sentence instead of failing every request.

It sends through ``ChatClient`` like every other request (with no retries and a header that
marks it), and only reads the failure it gets back.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from raq.endpoints.client import ChatClient
from raq.endpoints.endpoint import Endpoint
from raq.endpoints.failures import (
    CUT_STREAM,
    EMPTY_ANSWER,
    INCOMPLETE_STREAM,
    RequestError,
    ThinkingUnfinished,
)

PREFLIGHT_HEADER = "X-Raq-Preflight"


async def preflight(
    endpoint: Endpoint, body: dict[str, Any], *, timeout_s: float, secrets: Iterable[str | None]
) -> str | None:
    """None when the endpoint answers a real one-token chat request of the run's own kind,
    else a sentence saying why not (the server's text redacted).

    Listing /models proves little: a gateway answers a wrong key there, and on a chat request,
    with 400; a wrong model or base_url suffix only shows on a chat request. A server error
    that retrying can cure (429, 5xx) does not stop the run: its own retries deal with it.
    """
    async with ChatClient(
        timeout_s=timeout_s,
        max_retries=0,
        secrets=secrets,
        headers={PREFLIGHT_HEADER: "1"},
        require_content=False,
    ) as client:
        for attempt in range(2):
            try:
                await client.chat(endpoint, body)
                return None
            except ThinkingUnfinished:
                return None  # a reasoning model spent its one token thinking: it answered
            except RequestError as exc:
                if exc.status is not None and exc.retryable:
                    return None
                if str(exc).startswith((CUT_STREAM, INCOMPLETE_STREAM, EMPTY_ANSWER)):
                    return None  # it answered, then broke off (llama.cpp under load): reachable
                if attempt == 0 and exc.status == 400 and "max_tokens" in str(exc):
                    body = {k: v for k, v in body.items() if k != "max_tokens"}
                    continue  # a model that takes only max_completion_tokens
                if exc.status is None and "cannot connect" in str(exc):
                    return f"is unreachable ({exc})"
                if exc.status is None:
                    return f"did not answer a one-token chat request ({exc})"
                if exc.status in (401, 403):
                    return f"rejected the API key ({exc})"
                return f"refused a one-token chat request ({exc})"
    return None  # pragma: no cover
