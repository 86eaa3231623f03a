"""The faults the fake server can inject, checked by name, and the responses that replace a
reply outright: an error status, a reset, a hang, an HTML page, an echoed key, an error event
inside a 200 stream.

Faults that shape a reply instead (``empty``, ``not-permutation``, ``length``, ``cut-stream``,
``done-without-finish``) are applied where the reply is built (``_answer``, ``_completion``).
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from raq.testing._wire import choice, dumps, error_response, reset_connection

FAULT_KINDS = frozenset(
    {"429", "500", "502", "503", "reset", "hang", "cut-stream", "non-json", "empty"}
    | {"not-permutation", "done-without-finish", "length"}
    | {"401-echo", "500-echo", "stream-error-echo", "500-hostile"}
)
# An error body with rich markup, a clear-screen, a window title, an OSC 8 link and a bell.
HOSTILE_TEXT = (
    "boom [/x] [bold]not markup[/bold] \x1b[2J\x1b]0;pwned\x07 "
    "\x1b]8;;http://evil.example\x07click\x1b]8;;\x07 \x9b31m | <script>x</script> =1+1"
)
RETRY_AFTER = "429:retry-after="
# Faults that answer before the request is validated, as a proxy or rate limiter would.
EARLY_FAULTS = frozenset(
    {"429", "500", "502", "503", "reset", "hang", "non-json", "401-echo", "500-echo"}
    | {"500-hostile"}
)


def check_fault(fault: str | None) -> None:
    """Raise ValueError for a fault the server does not know, so typos fail loudly."""
    if fault is None or fault in FAULT_KINDS:
        return
    if isinstance(fault, str) and fault.startswith(RETRY_AFTER):
        value = fault[len(RETRY_AFTER) :]
        if value and value.isprintable():  # any header value: "2", "soon", "nan", a date
            return
    kinds = ", ".join(sorted(FAULT_KINDS))
    raise ValueError(f"unknown fault {fault!r}; expected None, {kinds} or '429:retry-after=S'")


def is_early(fault: str | None) -> bool:
    """Whether the fault answers before the request is validated (``early_fault_response``)."""
    return fault in EARLY_FAULTS or (fault is not None and fault.startswith("429"))


async def early_fault_response(request: web.Request, fault: str) -> web.StreamResponse:
    """The response of an early fault: what a failing proxy, gateway or rate limiter sends."""
    if fault == "hang":
        # Never resolves; stop() cancels it.
        await asyncio.get_running_loop().create_future()
    if fault == "reset":
        reset_connection(request)
        return web.Response()  # its write fails quietly on the aborted transport
    if fault == "non-json":
        return web.Response(body=b"<html>oops</html>", content_type="text/html")
    auth = request.headers.get("Authorization", "")
    if fault == "401-echo":
        return error_response(
            401, f"invalid token: {auth}", "invalid_request_error", code="invalid_api_key"
        )
    if fault == "500-echo":
        page = f"<html><body>Internal error handling {auth}</body></html>"
        return web.Response(status=500, text=page, content_type="text/html")
    if fault == "500-hostile":
        return error_response(500, HOSTILE_TEXT, "server_error")
    if fault.startswith("429"):
        headers = None
        if fault.startswith(RETRY_AFTER):
            headers = {"Retry-After": fault[len(RETRY_AFTER) :]}
        return error_response(
            429,
            "Rate limit reached (fake server fault).",
            "requests",
            code="rate_limit_exceeded",
            headers=headers,
        )
    return error_response(
        int(fault),
        f"The server had an error while processing your request (fake fault {fault}).",
        "server_error",
    )


async def stream_error(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
    """An error reported inside a 200 stream (or as a 200 JSON body without choices), echoing
    the Authorization header, as some gateways do when an upstream refuses the key."""
    auth = request.headers.get("Authorization", "")
    error = {"error": {"message": f"upstream refused credentials {auth}", "code": 401}}
    if body.get("stream") is not True:
        return web.Response(body=dumps(error), content_type="application/json")
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    try:
        await resp.prepare(request)
        role = choice({"role": "assistant", "content": ""})
        await resp.write(b"data: " + dumps({"choices": [role]}) + b"\n\n")
        await resp.write(b"data: " + dumps(error) + b"\n\n" + b"data: [DONE]\n\n")
        await resp.write_eof()
    except ConnectionError:
        pass
    return resp
