"""How anything leaves the fake server: compact JSON, OpenAI's error body, a choice delta, and
ending a connection on purpose (a polite close after a partial write, or a reset).

The lowest layer of the fake server, shared by faults, completions and the server itself, so
every response is encoded one way.
"""

from __future__ import annotations

import contextlib
import json
import socket
import struct
from typing import Any

from aiohttp import web


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def error_response(
    status: int,
    message: str,
    type_: str,
    *,
    code: str | None = None,
    param: str | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    """An OpenAI-style error body, the shape clients parse for messages and codes."""
    body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
    return web.Response(
        status=status, body=dumps(body), content_type="application/json", headers=headers
    )


def choice(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
    return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}


def reset_connection(request: web.BaseRequest) -> None:
    """Abort with RST (SO_LINGER 0) so the client sees a reset, not a polite close."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError, AttributeError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


def close_connection(request: web.BaseRequest) -> None:
    """Close after flushing what was written, so the client gets a truncated response."""
    if request.transport is not None:
        request.transport.close()
