"""Reading a run's records while its requests are in flight.

The outputs start with one pass over every answer and judgment (raq.result.reading), about a
quarter of a second per 5,000 answers, which would otherwise follow the last answer. Once
its modules are imported (the first of ``OutputsAhead``'s imports, a second into the
requests), this reads the questions the requests have finished, one at a time between the
requests' own work, so finalize reads only the last few. Only an accelerator: what it has
not read, finalize reads; the files are the same.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from raq.store import RunStore

if TYPE_CHECKING:
    from raq.result.reading import RecordPass

# How often the finished questions are read, and how many before the requests get the loop
# back: one (about 0.1 ms). Answers come back in waves, and a longer block delays a whole
# wave: 16 at a time (a few milliseconds) cost a 5,000-answer run 0.2 s of its requests.
READ_EVERY_S = 0.1
QUESTIONS_AT_A_TIME = 1


class RecordsAhead:
    """``start`` with the requests, ``stop`` when they end, then ``take`` the pass for
    finalize (None if it never started), or ``discard`` it."""

    def __init__(
        self,
        run_dir: Path,
        store: RunStore,
        finished_below: Callable[[], int],
        ready: Callable[[], bool],
    ) -> None:
        self.run_dir = run_dir
        self.store = store
        self.finished_below = finished_below
        self.ready = ready
        self.record_pass: RecordPass | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Begin reading beside the requests (from inside the running loop)."""
        self._task = asyncio.create_task(self.run())

    def stop(self) -> None:
        """The requests are over: no more reading (between two reads: never inside one)."""
        if self._task is not None:
            self._task.cancel()

    async def run(self) -> None:
        """Read finished questions until cancelled (when the requests end)."""
        try:
            await self._read()
        except Exception:  # only an accelerator: finalize reads everything itself
            self.discard()

    async def _read(self) -> None:
        while self.record_pass is None:
            await asyncio.sleep(READ_EVERY_S)
            if self.ready():
                self.record_pass = self._start()
        record_pass = self.record_pass
        while True:
            await asyncio.sleep(READ_EVERY_S)
            below = self.finished_below()
            while record_pass.read_below < below:
                before = record_pass.read_below
                record_pass.feed(min(below, before + QUESTIONS_AT_A_TIME))
                if record_pass.read_below == before:  # past the last question: all read
                    break
                await asyncio.sleep(0)

    def take(self) -> RecordPass | None:
        record_pass, self.record_pass = self.record_pass, None
        return record_pass

    def discard(self) -> None:
        """The run ended without outputs (interrupted, failed): no file is written."""
        record_pass = self.take()
        if record_pass is not None:
            with contextlib.suppress(Exception):
                record_pass.discard()

    def _start(self) -> RecordPass:
        # Deferred for start-up, not a circle: the pass's modules (the tallies, numpy) are
        # imported in the background by then.
        from raq.result.reading import RecordPass

        return RecordPass.into_run_dir(self.store, self.run_dir, expect_every_rank=True)
