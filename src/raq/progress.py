"""What a long stage reports as it goes; the CLI and notebooks draw it with rich."""

from __future__ import annotations

from typing import Protocol


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


def make_progress(progress: Progress | bool | None) -> Progress:
    """True: rich bars on stderr; False/None: silent; or the caller's own reporter."""
    if progress is True:
        from raq.report.terminal import RichProgress

        return RichProgress()
    if progress is False or progress is None:
        return SilentProgress()
    return progress
