"""What raq calls a model: an ``Endpoint`` (URL, model, key, limits) and the cache key of a request
to it.

Every layer above the request path names a model by its Endpoint, and every cached answer is
found by ``cache_key``; both are plain values with no HTTP in them, so they live apart from the
client that sends requests.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from raq.config import resolve_api_key

if TYPE_CHECKING:
    from raq.config import EndpointConfig


@dataclass(frozen=True)
class Endpoint:
    """A model behind an OpenAI-compatible URL, with its limits; the key is never printed."""

    name: str
    base_url: str
    model: str
    api_key: str | None = field(default=None, repr=False)
    concurrency: int | None = None
    # What the cache and fingerprints know the endpoint as: the configured URL, which for the
    # embedded local server ("local") stays the same whatever port it gets.
    cache_url: str | None = None
    requests_per_minute: float | None = None
    tokens_per_minute: float | None = None


def endpoint_for(config: EndpointConfig, role: str, env_file: str | None) -> Endpoint:
    """The Endpoint a candidate, judge or generator config names, with its key resolved."""

    assert config.base_url and config.model
    return Endpoint(
        name=config.name,
        base_url=config.base_url,
        cache_url=config.base_url,
        model=config.model,
        api_key=resolve_api_key(config, role, env_file),
        concurrency=config.concurrency,
        requests_per_minute=config.requests_per_minute,
        tokens_per_minute=config.tokens_per_minute,
    )


def cache_key(endpoint: Endpoint, body: dict[str, Any], salt: str = "") -> str:
    """A hash of everything that determines a response (never the key itself)."""
    url = endpoint.cache_url or endpoint.base_url
    material = {"base_url": url, "model": endpoint.model, "body": body, "salt": salt}
    encoded = json.dumps(material, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(encoded.encode()).hexdigest()
