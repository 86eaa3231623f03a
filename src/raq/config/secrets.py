"""API keys: read from the environment (and an env file), never from a config file, and
registered for redaction the moment they are read."""

from __future__ import annotations

import os
from pathlib import Path

from raq.config.loading import read_text
from raq.config.models import EndpointConfig
from raq.core.errors import ConfigError
from raq.core.redact import CONFIGURED_KEYS


def load_env_file(env_file: str | None) -> None:
    """Load the env file (if it exists) without overriding variables already set."""
    if not env_file:
        return
    path = Path(env_file)
    if path.is_file():
        import io

        from dotenv import load_dotenv

        load_dotenv(stream=io.StringIO(read_text(path, "env file")), override=False)


def resolve_api_key(endpoint: EndpointConfig, role: str, env_file: str | None) -> str | None:
    """The key from the named env var; a missing one is a ConfigError naming the variable."""
    if not endpoint.api_key_env:
        return None
    value = os.environ.get(endpoint.api_key_env)
    if not value:
        where = f" or in {env_file}" if env_file else ""
        raise ConfigError(
            f"{role} '{endpoint.name}' needs an API key in ${endpoint.api_key_env}, "
            f"which is not set in the environment{where}"
        )
    CONFIGURED_KEYS.add(value)
    return value
