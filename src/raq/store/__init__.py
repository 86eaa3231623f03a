"""What a run keeps on disk: the run's SQLite store (every paid answer and judgment, the moment
it returns), the response cache shared by runs, and the lock that keeps one writer per run."""

from raq.store.cache import CACHE_FORMAT, ResponseCache, default_cache_path, open_cache
from raq.store.run_store import RUN_FORMAT, STORE_NAME, RunStore, read_only_uri

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
