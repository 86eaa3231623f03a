"""A second Python process that draws half of a run's plots while this one draws the others.

matplotlib's drawing holds the GIL, so a thread would not help; a process does, on a machine
with a second core. It is started when the run's requests start, so its imports and fonts are
ready when the last answer lands, and it is only an accelerator: a helper that is not ready,
fails or dies leaves its plots to this process, and the files are the same either way.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import select
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

# The helper's share, about half of the drawing time (bars.png alone is a third of it).
HELPER_KEYS = ("bars", "latency")
# The helper runs at a lower priority: on a busy machine it gives way to the run's requests.
NICENESS = 10
_SERVE = "from raq.report.plots import serve_helper; serve_helper()"


class PlotHelper:
    """The helper process: ``start`` it early, ``send`` it a result once ``ready``,
    ``receive`` its plots, ``close`` it."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self.process = process
        self._ready = False
        self._sent = False
        self._answered = False
        self.job: tuple[Path, list[str]] | None = None  # where and which plots it was given

    @classmethod
    def start(cls) -> PlotHelper | None:
        """A helper preparing itself, or None on a machine with one core, off POSIX (the
        helper's pipes are polled with ``select``), or with no way to start Python again (a
        frozen or embedded interpreter)."""
        if _cores() < 2 or os.name != "posix" or not sys.executable:
            return None
        try:
            process = subprocess.Popen(
                [sys.executable, "-c", _SERVE],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                env={**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)},
            )
        except OSError:
            return None
        with contextlib.suppress(OSError, AttributeError):  # AttributeError: not on POSIX
            os.setpriority(os.PRIO_PROCESS, process.pid, NICENESS)
        return cls(process)

    def ready(self) -> bool:
        """Whether the helper has its imports and fonts (never waits for it)."""
        if not self._ready and self.process.poll() is None:
            stdout = self.process.stdout
            assert stdout is not None
            if select.select([stdout], [], [], 0)[0]:
                self._ready = stdout.readline() == ready_line()
        return self._ready and self.process.poll() is None

    def send(
        self,
        summary_json: dict[str, Any],
        speed_boxes: dict[str, Any],
        out_dir: Path,
        keys: list[str],
    ) -> bool:
        """Ask the helper to draw ``keys`` from what they read (a run's summary.json and the
        box statistics of its speeds); False when it cannot take them."""
        job = {
            # What HELPER_KEYS' plots read: plain data, so the helper needs no pandas or scipy.
            "result": SimpleNamespace(summary_json=summary_json, speed_boxes=speed_boxes),
            "out_dir": str(out_dir),
            "keys": keys,
        }
        try:
            stdin = self.process.stdin
            assert stdin is not None
            self._sent = True
            pickle.dump(job, stdin, protocol=pickle.HIGHEST_PROTOCOL)
            stdin.flush()
        except (OSError, ValueError, pickle.PicklingError):
            return False
        self.job = (out_dir, keys)
        return True

    def receive(self, within_s: float) -> tuple[dict[str, Path], dict[str, str]] | None:
        """The helper's plots and reasons, or None when it has not answered within
        ``within_s`` seconds (a busy machine starves it) or died."""
        try:
            stdout = self.process.stdout
            assert stdout is not None
            if not select.select([stdout], [], [], within_s)[0]:
                return None
            written, reasons = pickle.load(stdout)
        except (OSError, EOFError, pickle.UnpicklingError, ValueError):
            return None
        self._answered = True
        return {key: Path(path) for key, path in written.items()}, reasons

    def close(self) -> None:
        """Stop the helper: at once when it has no plots to draw (it may still be importing).
        One that was given plots and did not answer in time is left to finish them and exit
        (the files are the same whoever writes them last), so it leaves no half-written file."""
        with contextlib.suppress(OSError, ValueError):
            if self.process.stdin is not None:
                self.process.stdin.close()
        if not self._sent:
            self.process.kill()
        if not self._sent or self._answered:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=5)
        if self.process.stdout is not None:
            self.process.stdout.close()


def ready_line() -> bytes:
    """What the helper says when prepared: where its raq is (the run's own, or it is not used)."""
    return f"ready {__file__}\n".encode()


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
