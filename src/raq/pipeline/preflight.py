"""Preflight: before any paid work, one real one-token request of the run's own kind to
every endpoint that has work to do, so a wrong key, URL or model fails fast and by name."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

from raq.core.errors import EndpointError
from raq.endpoints.client import Endpoint, preflight
from raq.pipeline.schedule import Pipeline
from raq.stages.judge import (
    ranking_fields,
)

if TYPE_CHECKING:
    pass


def preflight_body(pipeline: Pipeline, role: str, name: str) -> dict[str, Any]:
    """A one-token request of the kind the run will send: a candidate's plain chat with its
    own parameters, a judge's in its structured-output mode when the config forces one."""

    messages = [{"role": "user", "content": "Reply with the word OK."}]
    if role == "candidate":
        params = dict(pipeline.candidate_configs[name].params)
        fields: dict[str, Any] = {}
    else:
        config = pipeline.judges[name].config
        params = {"temperature": 0.0, **config.params}
        mode = config.structured_output
        fields = ranking_fields(mode, 2) if mode != "auto" else {}
    params.pop("max_completion_tokens", None)
    return {"messages": messages, **params, **fields, "max_tokens": 1}


async def preflight_endpoints(endpoints: list[tuple[str, Endpoint]], pipeline: Pipeline) -> None:
    """Fail fast, naming the endpoint, when one that has work to do refuses a real request."""
    requests: dict[str, tuple[str, Endpoint, dict[str, Any]]] = {}
    for role, endpoint in endpoints:
        body = preflight_body(pipeline, role, endpoint.name)
        same = json.dumps([endpoint.base_url, endpoint.model, endpoint.api_key, body])
        requests.setdefault(same, (role, endpoint, body))
    timeout_s = pipeline.config.timeout_s
    secrets = pipeline.secrets()
    results = await asyncio.gather(
        *(
            preflight(e, body, timeout_s=timeout_s, secrets=secrets)
            for _, e, body in requests.values()
        )
    )
    for (role, endpoint, _), problem in zip(requests.values(), results, strict=True):
        if problem:
            raise EndpointError(
                f"{role} '{endpoint.name}' at {endpoint.base_url} {problem} "
                "(skip this check with --no-preflight)"
            )
