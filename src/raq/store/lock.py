"""One writer per run directory: an exclusive lock that names its holder.

Two ``raq run`` into one ``--output`` would pay for every request twice and race on the store.
The writer holds an OS lock (``flock``) on ``raq.lock`` in the run directory and writes its
pid, host and start time into it, so a second writer is refused with a line that names the
holder. The OS drops the lock when the holder dies, however it dies, so a lock left by a dead
process (``kill -9``, a reboot) is simply taken over. ``raq report`` writes the run's files too,
so it takes the lock as well (a report of a run in progress is refused, naming the run); the
library's readers (``RunResult`` tables) take none.
"""

from __future__ import annotations

import json
import os
import socket
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from raq.core.errors import StoreError

LOCK_NAME = "raq.lock"


class RunLock:
    """Held while a run writes ``run_dir``; a context manager."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / LOCK_NAME
        self._file: IO[str] | None = None

    def acquire(self) -> RunLock:
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = self.path.open("a+", encoding="utf-8")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = _describe(handle.read())
            handle.close()
            raise StoreError(
                f"{self.path.parent}: another raq run is writing to it ({holder}); wait for it "
                "to finish or stop it (or write to another --output)"
            ) from None
        holder = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps(holder) + "\n")
        handle.flush()
        self._file = handle
        return self

    def release(self) -> None:
        if self._file is not None:
            self._file.close()  # closing drops the flock; the file stays, naming the last holder
            self._file = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _describe(text: str) -> str:
    try:
        holder = json.loads(text)
        return f"pid {int(holder['pid'])} on {holder['host']} since {holder['since']}"
    except (ValueError, KeyError, TypeError):
        return "holder unknown"
