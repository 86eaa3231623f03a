"""Each candidate's standing: rank summaries, the question bootstrap of the mean rank, and the
head-to-head win rates."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from raq.stats.results import CandidateStats
from raq.stats.table import rank_tally
from raq.stats.tally import RankTally


def candidate_stats(
    ranks: pd.DataFrame, *, n_boot: int = 2000, seed: int = 0
) -> dict[str, CandidateStats]:
    """Per-candidate rank summary with a question-bootstrap CI, best mean rank first."""
    return candidate_stats_from_tally(rank_tally(ranks), n_boot=n_boot, seed=seed)


def candidate_stats_from_tally(
    tally: RankTally, *, n_boot: int, seed: int
) -> dict[str, CandidateStats]:
    low, high = bootstrap_from_tally(tally, n_boot=n_boot, seed=seed)
    summaries = {
        name: count_summary(counts)
        for name, counts in zip(tally.names, tally.value_counts, strict=True)
    }
    order = sorted(summaries, key=lambda name: (summaries[name][1], name))
    return {
        name: CandidateStats(
            name, *summaries[name], ci_low=float(low[name]), ci_high=float(high[name])
        )
        for name in order
    }


def count_summary(counts: dict[float, int]) -> tuple[int, float, float, float]:
    """n, mean, median and sample std (ddof 1) of values given as value → count."""
    n = sum(counts.values())
    values = sorted(counts)
    mean = math.fsum(v * counts[v] for v in values) / n
    variance = math.fsum(counts[v] * (v - mean) ** 2 for v in values) / (n - 1) if n > 1 else 0
    std = math.sqrt(variance) if n > 1 else math.nan
    middle, seen, lower, upper = (n - 1) / 2, 0, None, None
    for v in values:  # the values at sorted positions floor(middle) and ceil(middle)
        seen += counts[v]
        if lower is None and seen > math.floor(middle):
            lower = v
        if seen > math.ceil(middle):
            upper = v
            break
    return n, mean, (lower + upper) / 2, std


def bootstrap_mean_rank_ci(
    ranks: pd.DataFrame, *, n_boot: int = 2000, seed: int = 0, level: float = 0.95
) -> tuple[pd.Series, pd.Series]:
    """Percentile CI of each candidate's mean rank, resampling whole questions.

    Questions are the sampling unit (repeats and judges of one question are not independent),
    so each draw takes questions with replacement and all their blocks come along. The
    questions are put in a canonical order first: the interval does not depend on row order.
    """
    return bootstrap_from_tally(rank_tally(ranks), n_boot=n_boot, seed=seed, level=level)


def bootstrap_from_tally(
    tally: RankTally, *, n_boot: int, seed: int, level: float = 0.95
) -> tuple[pd.Series, pd.Series]:
    if n_boot < 1:
        raise ValueError(f"n_boot must be at least 1, got {n_boot}")
    k = len(tally.names)
    sums = np.frombuffer(tally.question_sums).reshape(-1, k)
    counts = np.frombuffer(tally.question_counts).reshape(-1, k)
    # Questions in a canonical order (by their rank sums and counts), so the same ranks give
    # the same interval whatever order their rows came in; questions with equal rows are
    # interchangeable, so no id is needed to order them.
    order = np.lexsort(np.hstack([sums, counts]).T[::-1])
    sums, counts = sums[order], counts[order]
    rng = np.random.default_rng(seed)
    n_q = len(sums)
    means = np.empty((n_boot, k))
    # Chunks of resamples bound each chunk's arrays (draws, cells, counts, weights: 256 KB each
    # up to 32,768 questions), so memory stays flat as datasets grow and they stay in the CPU's
    # cache: a fifth faster than chunks of 2 MB on 2,500 questions (scripts/BENCH.md).
    chunk = max(1, min(256, 32_768 // max(n_q, 1)))
    for start in range(0, n_boot, chunk):
        size = min(chunk, n_boot - start)
        draws = rng.integers(0, n_q, size=(size, n_q))
        # How often each question was drawn in each resample: one bincount over the flattened
        # (resample, question) cells, the same counts as np.add.at in half its time.
        cells = (np.arange(size)[:, None] * n_q + draws).ravel()
        weights = np.bincount(cells, minlength=size * n_q).reshape(size, n_q).astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            means[start : start + size] = (weights @ sums) / (weights @ counts)
    tail = (1 - level) / 2 * 100
    low, high = np.nanpercentile(means, [tail, 100 - tail], axis=0)
    return pd.Series(low, index=tally.names), pd.Series(high, index=tally.names)


def win_rates(ranks: pd.DataFrame | RankTally) -> pd.DataFrame:
    """Share of paired comparisons where the row candidate beat the column one (ties 1/2).

    Shown next to p-values because it is an effect size anyone can read. Diagonal NaN.
    """
    tally = ranks if isinstance(ranks, RankTally) else rank_tally(ranks)
    wins, shared = np.array(tally.wins), np.array(tally.shared, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        rates = np.where(shared > 0, wins / shared, np.nan)
    np.fill_diagonal(rates, np.nan)
    return pd.DataFrame(rates, index=tally.names, columns=tally.names)
