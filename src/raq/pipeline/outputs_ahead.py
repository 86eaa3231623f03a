"""Work for a run's outputs started while its requests are still in flight.

A run's requests mostly wait on the network; its outputs then cost about a second of imports
(pandas, scipy, statsmodels, matplotlib, the fonts) and of drawing. Both can start early: the
imports in a thread that gives way to the requests (``raq.core.give_way``), half of the plots
in a helper process (``raq.report.plot_helper``). Both
start some time into the requests, so a short run, which would not gain, does not pay for them
in its request stage. Neither is needed: whatever is not ready is done by finalize itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading

from raq.core import collector
from raq.core.give_way import Yielding, giving_way
from raq.report.plot_helper import PlotHelper

# Seconds into the requests when the outputs' imports start in the background: they overlap
# the waits of a run whose requests take time, and stay out of the request stage of a short
# one (whose total they would not shorten: the imports hold the GIL the requests need).
PREPARE_OUTPUTS_AFTER_S = 1.0
# Seconds into the requests when the plot helper process starts: a shorter run ends before the
# helper could be ready (about 1 s of imports), and would only pay for starting it.
PLOT_HELPER_AFTER_S = 2.0


class OutputsAhead:
    """``schedule`` at the start of the requests, ``stop_scheduling`` at their end, ``join``
    before finalize (which takes ``plot_helper``), ``close`` in every case."""

    def __init__(self) -> None:
        self.plot_helper: PlotHelper | None = None
        self._imports: threading.Thread | None = None
        # Set once the record pass's modules are imported (the first of the imports).
        self._records_importable = threading.Event()
        self._timers: list[asyncio.TimerHandle] = []
        # The imports give way to the requests while they run (raq.core.give_way).
        self._yielding = Yielding()

    def schedule(self) -> None:
        loop = asyncio.get_running_loop()
        self._timers = [
            loop.call_later(PREPARE_OUTPUTS_AFTER_S, self._start_imports),
            loop.call_later(PLOT_HELPER_AFTER_S, self._start_plot_helper),
        ]

    def stop_scheduling(self) -> None:
        """The requests are over: what has not started yet is left to finalize, and the
        imports, if still going, run at full speed."""
        for timer in self._timers:
            timer.cancel()
        self._yielding.stop()

    def records_ready(self) -> bool:
        """Whether the record pass's modules (raq.result.reading: the tallies, numpy) are
        imported, so it can read the finished questions (raq.pipeline.records_ahead)."""
        return self._records_importable.is_set()

    def join(self) -> None:
        """Wait for the imports, if they started (a failure among them is left for the
        outputs themselves to meet and report)."""
        if self._imports is not None:
            self._imports.join()

    def close(self) -> None:
        self.stop_scheduling()
        if self.plot_helper is not None:
            self.plot_helper.close()

    def _start_imports(self) -> None:
        self._imports = threading.Thread(
            target=giving_way,
            args=(self._import_outputs_paused, self._yielding),
            name="raq-prepare-outputs",
            daemon=True,
        )
        self._imports.start()

    def _start_plot_helper(self) -> None:
        self.plot_helper = PlotHelper.start()

    def _import_outputs_paused(self) -> None:
        """The outputs' imports with the cyclic collector paused: its full passes over the
        growing heap would stall the requests' loop (raq.core.collector)."""
        with collector.paused():
            _import_outputs(self._records_importable)


def _import_outputs(records_importable: threading.Event) -> None:
    """Import what the outputs need and read the fonts' glyph tables (about a second of work
    that would otherwise follow the last answer). The record pass's modules come first (about
    0.1 s): it then reads the finished questions while the rest is imported."""
    with contextlib.suppress(Exception):
        import raq.result.reading

        records_importable.set()
        import statsmodels.stats.multitest  # noqa: F401

        import raq.pipeline.finalize
        import raq.report.terminal  # noqa: F401  (the command prints the verdict with it)
        from raq.report.plots import prepare

        prepare()
