"""The response cache shared by runs: a completed response keyed by a hash of its request, so
the same question asked the same way is never paid for twice."""

from __future__ import annotations

import json
import time
from dataclasses import fields
from pathlib import Path

from raq.config import CacheConfig
from raq.core.records import Completion
from raq.store.sqlite import connect

CACHE_FORMAT = "raq-cache/1"


_CACHE_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY, completion TEXT NOT NULL, created_at REAL NOT NULL);
"""


_STORED_COMPLETION_FIELDS = tuple(f.name for f in fields(Completion) if f.name != "cached")


class ResponseCache:
    """Completed responses keyed by a hash of the request, shared across runs."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._conn = connect(path, _CACHE_SCHEMA, CACHE_FORMAT, "raq response cache")

    def get(self, key: str) -> Completion | None:
        row = self._conn.execute("SELECT completion FROM responses WHERE key=?", (key,)).fetchone()
        if row is None:
            return None
        try:
            return Completion(**{**json.loads(row[0]), "cached": True})
        except (ValueError, TypeError):  # a row edited by hand: ask again, and replace it
            return None

    def put(self, key: str, completion: Completion) -> None:
        # Field by field, not dataclasses.asdict (which deep-copies): this runs per answer.
        data = {name: getattr(completion, name) for name in _STORED_COMPLETION_FIELDS}
        self._conn.execute(
            "INSERT OR REPLACE INTO responses VALUES (?, ?, ?)",
            (key, json.dumps(data, ensure_ascii=False), time.time()),
        )

    def close(self) -> None:
        self._conn.close()


def open_cache(
    config: CacheConfig, enabled: bool | None = None, path: str | Path | None = None
) -> ResponseCache | None:
    """The shared response cache a config asks for (arguments override it), or None."""
    if not (config.enabled if enabled is None else enabled):
        return None
    return ResponseCache(Path(path or config.path or default_cache_path()).expanduser())


def default_cache_path() -> Path:
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("raq")) / "responses.sqlite"
