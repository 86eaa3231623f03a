"""What a model answers to a request the server has let through: 400 for a mode its behaviour
refuses, else its reply function's payload shaped by the output the request asks for (text,
JSON, a tool call, JSON in prose where guided JSON is ignored), with its thinking, and changed
by the faults that act on a reply (``empty``, ``not-permutation``, ``length``, ``cut-stream``,
``done-without-finish``) or stand in for it once the request is read (``stream-error-echo``).

The server (``fake_server``) decides whether and to whom a request is answered; this module
decides what the answer is; ``_completion`` puts it on the wire.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

from aiohttp import web

from raq.testing._behaviour import Behaviour, Body
from raq.testing._chat_request import (
    ignores_guidance,
    response_format_type,
    tool_to_call,
    unsupported_mode,
)
from raq.testing._completion import Completion
from raq.testing._faults import stream_error
from raq.testing._wire import error_response

# The fake server's one logger, whichever of its modules reports a failing test function.
_log = logging.getLogger("raq.testing.fake_server")


async def answer(
    request: web.Request,
    body: Body,
    behaviour: Behaviour,
    model: str | None,
    fault: str | None,
    *,
    preflight: bool,
    numbers: Iterator[int],
) -> web.StreamResponse:
    """The response to one chat request: 400 for a mode the behaviour refuses, else the reply.

    ``numbers`` is the server's completion counter, drawn from only when a completion is sent.
    """
    problem = unsupported_mode(body, behaviour)
    if problem is not None:
        message, param = problem
        return error_response(400, message, "invalid_request_error", param=param)

    tool_name = tool_to_call(body)
    if fault == "stream-error-echo":
        return await stream_error(request, body)
    payload: str | Any
    if preflight:
        payload = "OK"  # the reply functions expect the run's prompts
    elif fault == "empty":
        payload = ""
    elif fault == "not-permutation":
        wants_json = response_format_type(body) in ("json_schema", "json_object")
        payload = {"ranking": [1, 1]} if tool_name or wants_json else "1, 1"
    else:
        try:
            payload = behaviour.reply(body)
        except Exception as exc:
            _log.exception("fake server: reply function failed")
            return error_response(
                500, f"fake server: reply function failed: {exc!r}", "server_error"
            )
    text: str | None
    arguments: str | None = None
    if isinstance(payload, str):
        text = payload
    elif tool_name is not None:
        text, arguments = None, json.dumps(payload)
    elif ignores_guidance(body, behaviour):
        text = f"Here is my answer: {json.dumps(payload)} I hope this helps."
    else:
        text = json.dumps(payload)
    cut = fault == "cut-stream"
    thinking = behaviour.thinking
    if callable(thinking):
        try:
            thinking = thinking(body)
        except Exception as exc:
            _log.exception("fake server: thinking function failed")
            return error_response(
                500, f"fake server: thinking function failed: {exc!r}", "server_error"
            )
    if fault == "length" and text is not None:
        words = text.split(" ")
        text = " ".join(words[: max(1, len(words) // 2)])
    completion = Completion(
        next(numbers), body, behaviour, model, text, tool_name, arguments, thinking
    )
    if fault == "length":
        completion.finish_reason = "length"
    if body.get("stream") is True:
        return await completion.stream(request, cut, interrupted=fault == "done-without-finish")
    return await completion.complete(request, cut)
