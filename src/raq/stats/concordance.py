"""How alike rankings are: Kendall's W over several raters and Kendall's tau between two."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from raq.stats.ranks import midranks


def kendall_w(matrix: Any) -> float:
    """Kendall's W (tie-corrected) for raters (rows) ranking items (columns); NaN if undefined."""
    matrix = np.asarray(matrix, dtype=float)
    m, n = matrix.shape
    if m < 2 or n < 2:
        return math.nan
    reranked = [midranks(list(row)) for row in matrix]
    totals = np.sum([ranks for ranks, _ in reranked], axis=0)
    s = float(np.sum((totals - totals.mean()) ** 2))
    ties = sum(t for _, t in reranked)
    denominator = m**2 * (n**3 - n) - m * ties
    return 12 * s / denominator if denominator > 0 else math.nan


def kendall_tau(a: Any, b: Any) -> float:
    """Kendall tau over the items both rankings contain (NaN marks a missing one); NaN when
    fewer than 2 or constant."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    both = ~np.isnan(a) & ~np.isnan(b)
    if both.sum() < 2:
        return math.nan
    # Deferred: the run's record pass imports this module during the requests, before scipy.
    from scipy import stats as ss

    return float(ss.kendalltau(a[both], b[both]).statistic)
