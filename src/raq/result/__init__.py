"""The result of a run: its record (``RunResult``, public API), the one pass that reads the
store into tallies, summary.json with the verdict and its sentences, the CI gate over it, and
the evidence behind each significant pair. Written to files by raq.pipeline.finalize."""

from __future__ import annotations

from typing import TYPE_CHECKING

from raq.core.lazy import lazy_names

if TYPE_CHECKING:
    from raq.result.record import RunResult

__all__ = ["RunResult"]


# RunResult loads on first use: the command imports the gate's limits (raq.result.gate)
# at start-up, and a run's first request need not wait for the result's modules.
__getattr__ = lazy_names(__name__, {"RunResult": "raq.result.record"})
