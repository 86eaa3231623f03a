"""Keys out of server text: one redactor that every reply and error of every request passes.

A server may echo the Authorization header it received (a 401 "bad token: Bearer …", a
streamed error event, a 500 page, even an answer). Whatever it says is redacted here, in the
request path, before anything stores, caches or prints it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

REDACTED = "[REDACTED]"
# Shorter "keys" (placeholders such as "x") would redact ordinary words; no real key is this short.
MIN_SECRET_LENGTH = 4
_BEARER = re.compile(r"(Bearer\s+)[^\s\"'<>,;]+", re.IGNORECASE)


class Redactor:
    """Replaces every registered secret, and any ``Bearer <token>``, with ``[REDACTED]``."""

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        self._secrets: list[str] = []
        self.add(*secrets)

    def add(self, *secrets: str | None) -> None:
        for secret in secrets:
            if secret and len(secret) >= MIN_SECRET_LENGTH and secret not in self._secrets:
                self._secrets.append(secret)
                # Longest first, so a key that contains another is replaced whole.
                self._secrets.sort(key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        if "earer" in text:
            text = _BEARER.sub(lambda m: m.group(1) + REDACTED, text)
        return text

    def optional(self, text: str | None) -> str | None:
        return None if text is None else self(text)


# Every key raq resolved in this process (``config.resolve_api_key`` adds it): the CLI passes
# each error line through it, a last guard for text that came from a file rather than a server.
CONFIGURED_KEYS = Redactor()
