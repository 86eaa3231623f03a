"""The cyclic garbage collector while raq imports modules: paused, and in raq's own process
what the imports built is then frozen out of the collector's later passes.

Modules, classes and functions live as long as the process, yet every full collection walks
all of them. While a run imports its outputs' modules (pandas, scipy, matplotlib) beside its
requests, three such passes of 25 to 50 ms each held the GIL, and every answer in flight
waited for them (0.1 s of a 5,000-answer run's request stage); the command's own imports
paid another 27 ms of collections before its first request.

So imports run with the collector paused (``paused``). When the last pause ends, the
collector runs again; in raq's own process (``own_process``: the ``raq`` command) everything
alive is first frozen (``gc.freeze``), so later passes walk only what the run itself makes.
The cyclic garbage made during a pause is frozen with it (about 2,500 objects over a run's
background imports, once per process): collecting it first would cost the very pass
avoided. A library caller's process is never frozen: its objects are its own.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_state = {"pauses": 0, "was_enabled": False, "owner": False, "froze": False}


def own_process() -> None:
    """raq runs the whole process (its command): resuming may freeze what is alive."""
    with _lock:
        _state["owner"] = True


def pause() -> None:
    """Pause the collector for imports about to run (pauses nest; a collector already off
    stays off)."""
    with _lock:
        if _state["pauses"] == 0:
            _state["was_enabled"] = gc.isenabled()
            gc.disable()
        _state["pauses"] += 1


def resume() -> None:
    """End a pause (a no-op without one); after the last, the collector runs again, after a
    freeze in raq's own process."""
    with _lock:
        if _state["pauses"] == 0:
            return
        _state["pauses"] -= 1
        if _state["pauses"] == 0 and _state["was_enabled"]:
            if _state["owner"]:
                gc.freeze()
                _state["froze"] = True
            gc.enable()


def froze_process() -> bool:
    """Whether raq froze its process's objects (then a full collection is cheap; asked
    instead of ``gc.get_freeze_count()``, which walks every frozen object: 18 ms here)."""
    return bool(_state["froze"])


@contextmanager
def full_collections_cheap() -> Iterator[None]:
    """A ``gc.collect()`` inside the block (a library's: statsmodels' Holm adjustment) scans
    only the objects made since it began, not every object of the process (about 40 ms once
    pandas, scipy and matplotlib are loaded, twice in a run's finalize). The objects alive now
    are frozen for the block, unless the process is frozen already: by raq's command (its
    collections are cheap) or by someone else (their freeze is left alone). Older cyclic
    garbage waits for the next ordinary collection."""
    if froze_process() or gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


@contextmanager
def paused() -> Iterator[None]:
    """The collector paused while the block imports."""
    pause()
    try:
        yield
    finally:
        resume()
