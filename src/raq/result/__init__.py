"""The result of a run: its record (``RunResult``, public API), the one pass that reads the
store into tallies, summary.json with the verdict and its sentences, the CI gate over it, and
the evidence behind each significant pair. Written to files by raq.pipeline.finalize."""

from raq.result.record import RunResult

__all__ = ["RunResult"]
