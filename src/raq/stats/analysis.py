"""``analyse``: candidate statistics plus the chosen test's pairwise verdicts, from a ranks table or
a closed tally."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd

from raq.stats.candidates import candidate_stats_from_tally
from raq.stats.power import power_hint, questions_for_power
from raq.stats.rank_tests import (
    POSTHOCS,
    TESTS,
    check_p_adjust,
    dunn_test,
    friedman_test,
    question_ranks,
    wilcoxon_test,
)
from raq.stats.results import CandidateStats, PairResult, StatsResult
from raq.stats.table import rank_tally
from raq.stats.tally import RankTally


def _check_options(test: str, posthoc: str, alpha: float, p_adjust: str | None) -> str | None:
    if test not in TESTS:
        raise ValueError(f"unknown test '{test}' (one of: {', '.join(TESTS)})")
    if posthoc not in POSTHOCS:
        raise ValueError(f"unknown post-hoc '{posthoc}' (one of: {', '.join(POSTHOCS)})")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie strictly between 0 and 1, got {alpha}")
    return check_p_adjust(p_adjust, allow_single_step=test == "friedman" and posthoc == "conover")


def analyse(
    ranks: pd.DataFrame | RankTally,
    *,
    test: str = "dunn",
    p_adjust: str | None = "holm",
    alpha: float = 0.05,
    posthoc: str = "conover",
    n_boot: int = 2000,
    seed: int = 0,
    candidates: dict[str, CandidateStats] | None = None,
) -> StatsResult:
    """Candidate rank statistics plus pairwise significance with the chosen test, from a ranks
    table or a closed tally (what a run's finalize streams its judgments into).

    ``candidates``: the statistics an earlier ``analyse`` of the same ranks, ``n_boot`` and
    ``seed`` returned (they do not depend on the test), so a second test skips the bootstrap.
    """
    adjust = _check_options(test, posthoc, alpha, p_adjust)
    tally = ranks if isinstance(ranks, RankTally) else rank_tally(ranks)
    if not tally.n_ranks:
        raise ValueError("no ranks to analyse")
    names = tally.ranked_names()
    if len(names) < 2:
        raise ValueError(f"need at least 2 candidates to compare, got {len(names)}: {names}")
    if names != tally.names:
        unranked = sorted(set(tally.names) - set(names))
        raise ValueError(f"candidate(s) {', '.join(unranked)} have no ranks")
    if test == "dunn":
        info, pvalues, _ = dunn_test(tally, adjust)
    elif test == "wilcoxon":
        info, pvalues, _ = wilcoxon_test(tally, adjust)
    else:
        info, pvalues, _ = friedman_test(tally, adjust, posthoc)
    info["alpha"] = alpha

    if candidates is None:
        candidates = candidate_stats_from_tally(tally, n_boot=n_boot, seed=seed)
    pairs = _pairs(tally, pvalues, candidates, alpha)
    significant = [(p.a, p.b, p.p_adjusted) for p in pairs if p.significant]
    power = questions_for_power(tally, list(candidates), alpha, adjusted=adjust is not None)
    hint = power_hint(power, pairs, info["n_questions"], alpha)
    return StatsResult(info, candidates, pvalues, pairs, significant, hint, power)


def _pairs(
    tally: RankTally,
    pvalues: pd.DataFrame,
    candidates: dict[str, CandidateStats],
    alpha: float,
) -> list[PairResult]:
    """Every unordered pair with p-value, mean-rank difference and head-to-head win rate."""
    values = question_ranks(tally)
    pairs = []
    for i, j in itertools.combinations(range(len(tally.names)), 2):
        a, b = tally.names[i], tally.names[j]
        p = float(pvalues.at[a, b])
        n = tally.shared[i][j]
        both = ~np.isnan(values[:, i]) & ~np.isnan(values[:, j])
        d = values[both, i] - values[both, j]
        wins = (d < 0) + 0.5 * (d == 0)
        pairs.append(
            PairResult(
                a=a,
                b=b,
                p_adjusted=p,
                significant=bool(p < alpha),  # NaN compares False
                mean_rank_diff=candidates[a].mean_rank - candidates[b].mean_rank,
                win_rate_a=tally.wins[i][j] / n if n else math.nan,
                n_pairs=n,
                paired_diff=float(np.mean(d)) if len(d) else math.nan,
                paired_diff_sd=float(np.std(d, ddof=1)) if len(d) > 1 else math.nan,
                win_sd=float(np.std(wins, ddof=1)) if len(d) > 1 else math.nan,
            )
        )
    return pairs
