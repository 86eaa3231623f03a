"""The run directory: refuse one that holds something else, and turn a full disk, a
read-only directory or a locked store into one line that says what to do."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from raq.core.errors import StoreError
from raq.store import STORE_NAME
from raq.store.lock import LOCK_NAME

if TYPE_CHECKING:
    pass


@contextlib.contextmanager
def storage_errors(run_dir: Path) -> Iterator[None]:
    """A full disk, a read-only directory or a locked store as one line that says what to do
    (the store keeps every record committed before it)."""
    import errno
    import sqlite3

    try:
        yield
    except sqlite3.OperationalError as exc:
        text = str(exc)
        if "full" in text:
            raise StoreError(_disk_full(run_dir)) from None
        if "locked" in text:
            raise StoreError(
                f"{run_dir / STORE_NAME}: the run store is locked by another process ({text}); "
                "wait for it to finish or stop it"
            ) from None
        if "readonly" in text or "read-only" in text:
            raise StoreError(f"{run_dir}: cannot write the run store ({text})") from None
        raise StoreError(f"{run_dir / STORE_NAME}: {text}") from None
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise StoreError(_disk_full(run_dir)) from None
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            where = exc.filename or run_dir
            raise StoreError(f"{where}: cannot write here ({exc.strerror})") from None
        raise


def _disk_full(run_dir: Path) -> str:
    return (
        f"{run_dir}: no space left on the device; every answer and judgment stored so far is "
        "kept: free some space, then run the same command again (into the same --output it "
        f"resumes; or raq run --resume {run_dir})"
    )


def check_run_dir(run_dir: Path) -> None:
    """Refuse to write into a directory that holds something other than a raq run."""
    if run_dir.exists() and not run_dir.is_dir():
        raise StoreError(f"{run_dir}: exists and is not a directory")
    others = run_dir.is_dir() and any(p.name != LOCK_NAME for p in run_dir.iterdir())
    if others and not (run_dir / STORE_NAME).exists():
        raise StoreError(
            f"{run_dir}: not empty and not a raq run directory; raq will not write into it"
        )
