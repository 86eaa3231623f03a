"""What a run keeps on disk: the run's SQLite store (every paid answer and judgment, the moment
it returns), the response cache shared by runs, and the lock that keeps one writer per run."""

from raq.store.run_store import (
    CACHE_FORMAT,
    RUN_FORMAT,
    STORE_NAME,
    ResponseCache,
    RunStore,
    default_cache_path,
    open_cache,
    read_only_uri,
)

__all__ = [
    "CACHE_FORMAT",
    "RUN_FORMAT",
    "STORE_NAME",
    "ResponseCache",
    "RunStore",
    "default_cache_path",
    "open_cache",
    "read_only_uri",
]
