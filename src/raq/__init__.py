"""raq — Relative Answer Quality for LLMs behind OpenAI-compatible endpoints.

The public API is small: ``evaluate`` / ``evaluate_async``, the config and result types.
Heavy modules load on first use, so ``import raq`` and ``raq --help`` stay fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from raq.core.lazy import lazy_names

__version__ = "0.1.0"
__all__ = ["RunConfig", "RunResult", "__version__", "evaluate", "evaluate_async", "load_config"]

if TYPE_CHECKING:
    from raq.config import RunConfig, load_config
    from raq.pipeline.run import evaluate, evaluate_async
    from raq.result import RunResult

_LAZY = {
    "evaluate": "raq.pipeline.run",
    "evaluate_async": "raq.pipeline.run",
    "RunConfig": "raq.config",
    "load_config": "raq.config",
    "RunResult": "raq.result",
}


__getattr__ = lazy_names(__name__, _LAZY)
