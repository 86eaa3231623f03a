"""What a long stage reports as it goes: silently, or as rich bars on stderr (the CLI and
notebooks), or through the caller's own reporter."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from raq.core.escape import safe_console

if TYPE_CHECKING:
    from rich.console import Console


class Progress(Protocol):
    def start(self, stage: str, total: int, done: int = 0) -> None: ...
    def advance(self, stage: str, n: int = 1) -> None: ...
    def note(self, message: str) -> None: ...
    def stop(self) -> None: ...


class SilentProgress:
    """Reports nothing (``progress=False``, tests, libraries)."""

    def start(self, stage: str, total: int, done: int = 0) -> None:
        pass

    def advance(self, stage: str, n: int = 1) -> None:
        pass

    def note(self, message: str) -> None:
        pass

    def stop(self) -> None:
        pass


STAGE_LABELS = {"answers": "candidate answers", "judgments": "judgments"}


class RichProgress:
    """One bar per pipeline stage; notes (a disabled endpoint…) print above the bars."""

    def __init__(self, console: Console | None = None) -> None:
        # rich loads here, not with the module: a quiet run's first request need not wait.
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.progress import Progress as RichBars

        self.console = console or safe_console(stderr=True)
        self._bars = RichBars(
            TextColumn("{task.description:<18}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )
        self._tasks: dict[str, int] = {}
        self._started = False

    def start(self, stage: str, total: int, done: int = 0) -> None:
        if not self._started:
            self._bars.start()
            self._started = True
        label = STAGE_LABELS.get(stage, stage)
        self._tasks[stage] = self._bars.add_task(label, total=total, completed=done)

    def advance(self, stage: str, n: int = 1) -> None:
        task = self._tasks.get(stage)
        if task is not None:
            self._bars.advance(task, n)

    def note(self, message: str) -> None:
        from rich.text import Text

        self.console.print(Text("!", style="yellow"), message)

    def stop(self) -> None:
        if self._started:
            self._bars.stop()
            self._started = False


def make_progress(progress: Progress | bool | None) -> Progress:
    """True: rich bars on stderr; False/None: silent; or the caller's own reporter."""
    if progress is True:
        return RichProgress()
    if progress is False or progress is None:
        return SilentProgress()
    return progress
