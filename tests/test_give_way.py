"""Work that gives way to the event loop (raq.core.give_way): it pauses while asked to, runs
unpaused once told the requests are over, leaves a debugger's or coverage's tracer alone, and
leaves no hook behind."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import Any

import pytest

from raq.core import give_way
from raq.core.give_way import Yielding, giving_way


def in_a_thread(body: Callable[[], Any]) -> Any:
    """Run ``body`` in a fresh thread with no tracer (as raq's import thread starts, unless a
    debugger or coverage traces every thread), and return what it returned or raise."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        sys.settrace(None)
        try:
            outcome["value"] = body()
        except BaseException as exc:  # re-raised in the test's thread
            outcome["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def busy(calls: int) -> int:
    """Python-level calls, as an import's module code makes them."""
    return sum(abs(n) for n in range(calls))


class FakeTime:
    """A clock that advances 0.2 ms at every reading, and a record of the pauses."""

    def __init__(self) -> None:
        self.now = 0.0
        self.pauses: list[float] = []

    def clock(self) -> float:
        self.now += 0.0002
        return self.now

    def pause(self, seconds: float) -> None:
        self.pauses.append(seconds)


def test_work_pauses_while_giving_way_and_runs_on_when_told() -> None:
    time, yielding = FakeTime(), Yielding()

    def work() -> int:
        [busy(1) for _ in range(50)]
        yielding.stop()
        paused = len(time.pauses)
        [busy(1) for _ in range(50)]
        return paused

    paused = in_a_thread(lambda: giving_way(work, yielding, clock=time.clock, pause=time.pause))
    # A reading every call, 0.2 ms each: a pause every few calls, none after stop().
    assert paused >= 10
    assert len(time.pauses) == paused
    assert set(time.pauses) == {give_way.PAUSE_S}


def test_the_result_is_returned_and_no_hook_is_left_even_on_an_error() -> None:
    time = FakeTime()

    def body() -> tuple[int, object, object]:
        result = giving_way(lambda: busy(10), Yielding(), clock=time.clock, pause=time.pause)
        after = sys.gettrace()

        def fail() -> None:
            busy(10)
            raise ValueError("the import failed")

        with pytest.raises(ValueError, match="the import failed"):
            giving_way(fail, Yielding(), clock=time.clock, pause=time.pause)
        return result, after, sys.gettrace()

    assert in_a_thread(body) == (busy(10), None, None)


def test_a_tracer_already_there_is_kept_and_the_work_runs_unpaused() -> None:
    time = FakeTime()
    seen: list[str] = []

    def debugger(frame: Any, event: str, arg: Any) -> None:
        seen.append(event)

    def body() -> object:
        sys.settrace(debugger)
        try:
            giving_way(lambda: busy(10), Yielding(), clock=time.clock, pause=time.pause)
            return sys.gettrace()
        finally:
            sys.settrace(None)

    assert in_a_thread(body) is debugger
    assert "call" in seen and time.pauses == []
