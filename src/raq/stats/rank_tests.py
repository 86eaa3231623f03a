"""The tests that say which candidates differ, each from the tallies of question-level ranks:
Dunn (the original RAQ method), Friedman with the Conover, Nemenyi or z post-hoc, and pairwise
Wilcoxon signed-rank; with the p-value adjustments of statsmodels' ``multipletests``."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as ss

from raq.config import P_ADJUST_METHODS  # the methods of statsmodels' multipletests
from raq.core import collector
from raq.stats.ranks import merge_counts, midrank_map, tie_sum
from raq.stats.tally import RankTally

# What Dunn's test assumes, with its error rate measured by scripts/calibration.py.
DUNN_CAVEAT = (
    "Dunn's test treats the question-level ranks as independent samples, but the ranks within "
    "a question are a permutation, so it is anti-conservative: when the candidates do not "
    "differ it declares a difference in about 10% of 4-candidate evaluations and 20% of "
    "2-candidate ones at alpha = 0.05 (measured by scripts/calibration.py; README, Calibration)."
)


# posthoc_conover_friedman also accepts this one (Tukey's studentized range instead of t).
SINGLE_STEP = "single-step"


TESTS = ("dunn", "friedman", "wilcoxon")


POSTHOCS = ("conover", "nemenyi", "ztest")


def check_p_adjust(p_adjust: str | None, allow_single_step: bool) -> str | None:
    """Normalise p_adjust (None/'none' mean unadjusted) and reject what the tests cannot do."""
    if p_adjust is None or p_adjust == "" or str(p_adjust).lower() == "none":
        return None
    allowed = [*P_ADJUST_METHODS, *([SINGLE_STEP] if allow_single_step else [])]
    if p_adjust not in allowed:
        raise ValueError(
            f"unknown p_adjust method '{p_adjust}' (one of: {', '.join(allowed)}, or none)"
        )
    return p_adjust


def describe_test(
    name: str, tally: RankTally, adjust: str | None, description: str
) -> dict[str, Any]:
    """What every test reports about itself (summary.json's ``test``)."""
    return {
        "name": name,
        "p_adjust": adjust,
        "posthoc": None,
        "description": description,
        "n_questions": tally.n_questions,
        "n_blocks": tally.n_blocks,
        "n_ranks": tally.n_ranks,
    }


def dunn_test(
    tally: RankTally, adjust: str | None
) -> tuple[dict[str, Any], pd.DataFrame, pd.DataFrame]:
    """Dunn's test over all ranks pooled by candidate (the article's choice, kept as default),
    as scikit-posthocs' posthoc_dunn computes it, from each candidate's counts of each rank."""
    rank_sums, sizes, n, ties_sum = pooled_rank_sums(tally.value_counts)
    ties = ties_sum / (12.0 * (n - 1))
    means = rank_sums / sizes
    upper = np.triu_indices(len(sizes), 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        z = np.abs(means[upper[0]] - means[upper[1]]) / np.sqrt(
            (n * (n + 1.0) / 12.0 - ties) * (1.0 / sizes[upper[0]] + 1.0 / sizes[upper[1]])
        )
    raw = 2.0 * ss.norm.sf(np.abs(z))
    how = f"{adjust}-adjusted" if adjust else "unadjusted"
    info = describe_test(
        "dunn", tally, adjust,
        f"Dunn's test on {n} question-level ranks pooled by candidate ({tally.n_questions} "
        f"questions; a question's repeats and judges averaged into one ranking), p-values "
        f"{how} (the original RAQ method).",
    )  # fmt: skip
    return (
        info,
        square_matrix(adjust_pvalues(raw, adjust), tally.names),
        square_matrix(raw, tally.names),
    )


def adjust_pvalues(raw: np.ndarray, adjust: str | None) -> np.ndarray:
    """Pairwise p-values corrected for multiple comparisons (statsmodels' multipletests, the
    function scikit-posthocs calls)."""
    if not adjust or not len(raw):
        return raw
    from statsmodels.stats.multitest import multipletests

    # Holm's branch calls gc.collect(): raq.core.collector keeps that pass to what is new.
    with collector.full_collections_cheap():
        return multipletests(raw, method=adjust)[1]


def square_matrix(upper_values: np.ndarray, names: list[str]) -> pd.DataFrame:
    """Upper-triangle pair values (row-major, as np.triu_indices) as a symmetric square table
    with a 1.0 diagonal."""
    k = len(names)
    values = np.ones((k, k))
    upper = np.triu_indices(k, 1)
    values[upper] = upper_values
    values[(upper[1], upper[0])] = upper_values
    return pd.DataFrame(values, index=list(names), columns=list(names))


def friedman_test(
    tally: RankTally, adjust: str | None, posthoc: str
) -> tuple[dict[str, Any], pd.DataFrame, pd.DataFrame]:
    """Friedman omnibus + post-hoc over complete blocks: the design the data actually has."""
    n, k = tally.complete_blocks, len(tally.names)
    n_dropped = tally.n_blocks - n
    if n < 2:
        raise ValueError(
            f"the Friedman test needs at least 2 complete questions (every candidate ranked), "
            f"found {n} of {tally.n_blocks}"
        )
    rank_sums = np.array(tally.complete_rank_sums)
    statistic, p_value = friedman_chi2(rank_sums, tally.complete_ties, n, k)
    if posthoc == "conover":
        squares = tally.complete_squares
        pvalues = conover_pvalues(rank_sums, squares, n, k, adjust)
        unadjusted = conover_pvalues(rank_sums, squares, n, k, None)
        post = f"Conover post-hoc with {adjust or 'no'} p-adjustment"
    elif posthoc == "ztest":
        unadjusted = ztest_pvalues(rank_sums, n, k)
        pvalues = adjust_pvalues(unadjusted, adjust)
        post = f"z-test on mean ranks (Demšar 2006) with {adjust or 'no'} p-adjustment"
    else:
        adjust = None  # Nemenyi controls the family-wise error itself
        pvalues = unadjusted = nemenyi_pvalues(rank_sums, n, k)
        post = "Nemenyi post-hoc (its own family-wise control, no further p-adjustment)"
    info = {
        "name": "friedman",
        "p_adjust": adjust,
        "posthoc": posthoc,
        "description": (
            f"Friedman test over {n} complete questions (each question's repeats and judges "
            f"averaged into one ranking: the question is the unit), then {post}; the blocked "
            f"design compares candidates within the same question; {n_dropped} incomplete "
            "question(s) (a candidate's answer missing) were dropped from the test."
        ),
        "n_questions": tally.complete_questions,
        "n_blocks": tally.n_blocks,
        "n_ranks": tally.n_ranks,
        "statistic": statistic,
        "p_value": p_value,
        "df": k - 1,
        "n_complete_blocks": n,
        "n_incomplete_blocks_dropped": n_dropped,
    }
    return info, square_matrix(pvalues, tally.names), square_matrix(unadjusted, tally.names)


def friedman_chi2(rank_sums: np.ndarray, ties: float, n: int, k: int) -> tuple[float, float]:
    """Tie-corrected Friedman χ² (scipy's friedmanchisquare formula, which also holds for the
    k = 2 that scipy refuses: there it is the two-sided sign test χ²)."""
    correction = 1 - ties / (k * (k * k - 1) * n)
    if correction == 0:
        return math.nan, math.nan
    ssbn = float(np.sum(rank_sums**2))
    statistic = (12.0 / (k * n * (k + 1)) * ssbn - 3 * n * (k + 1)) / correction
    return statistic, float(ss.chi2.sf(statistic, k - 1))


def conover_pvalues(
    rank_sums: np.ndarray, squares: float, n: int, k: int, adjust: str | None
) -> np.ndarray:
    """scikit-posthocs' posthoc_conover_friedman, from the rank sums and Σ rank²."""
    upper = np.triu_indices(k, 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        s2 = 1.0 / (k - 1.0) * (squares - k * n * ((k + 1.0) ** 2.0) / 4.0)
        t2 = np.sum((rank_sums - n * (k + 1.0) / 2.0) ** 2.0) / s2
        df = n * k - k - n + 1.0
        a = s2 * (2.0 * n * (k - 1.0)) / df
        b = 1.0 - t2 / (n * (k - 1.0))
        differences = np.abs(rank_sums[upper[0]] - rank_sums[upper[1]])
        if adjust == SINGLE_STEP:
            q = np.sqrt(2.0) * differences / np.sqrt(a) / np.sqrt(b)
            return ss.studentized_range.sf(q, k, np.inf)
        t = differences / np.sqrt(a) / np.sqrt(b)
        return adjust_pvalues(2.0 * ss.t.sf(np.abs(t), df=df), adjust)


def nemenyi_pvalues(rank_sums: np.ndarray, n: int, k: int) -> np.ndarray:
    """scikit-posthocs' posthoc_nemenyi_friedman, from the rank sums."""
    upper = np.triu_indices(k, 1)
    means = rank_sums / n
    q = np.abs(means[upper[0]] - means[upper[1]]) / np.sqrt(k * (k + 1.0) / (6.0 * n))
    return ss.studentized_range.sf(q * np.sqrt(2.0), k, np.inf)


def ztest_pvalues(rank_sums: np.ndarray, n: int, k: int) -> np.ndarray:
    """Demšar's (2006) z on the difference of mean ranks over n complete blocks, unadjusted."""
    upper = np.triu_indices(k, 1)
    means = rank_sums / n
    z = np.abs(means[upper[0]] - means[upper[1]]) / np.sqrt(k * (k + 1.0) / (6.0 * n))
    return 2.0 * ss.norm.sf(z)


def question_ranks(tally: RankTally) -> np.ndarray:
    """Each question's consensus rank per candidate (questions × candidates, NaN where the
    candidate was not ranked)."""
    k = len(tally.names)
    sums = np.frombuffer(tally.question_sums).reshape(-1, k)
    counts = np.frombuffer(tally.question_counts).reshape(-1, k)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.where(counts > 0, counts, 1.0), np.nan)


def wilcoxon_p(differences: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p of paired differences, zeros split between the signs:
    exact without ties or zeros up to 50 questions, else the tie-corrected normal
    approximation (scipy's permutation fallback costs ~0.5 s a pair, too slow for a run)."""
    magnitudes = np.abs(differences)
    exact = len(differences) <= 50 and magnitudes.all() and len(set(magnitudes)) == len(magnitudes)
    method = "exact" if exact else "approx"
    return float(ss.wilcoxon(differences, zero_method="zsplit", method=method).pvalue)


def wilcoxon_test(
    tally: RankTally, adjust: str | None
) -> tuple[dict[str, Any], pd.DataFrame, pd.DataFrame]:
    """Pairwise Wilcoxon signed-rank tests on the question-level rank differences (Benavoli et
    al. 2016), over the questions where both candidates were ranked."""
    values = question_ranks(tally)
    k = len(tally.names)
    raw = []
    for i, j in zip(*np.triu_indices(k, 1), strict=True):
        both = ~np.isnan(values[:, i]) & ~np.isnan(values[:, j])
        differences = values[both, i] - values[both, j]
        if not np.any(differences):
            raw.append(1.0)
            continue
        raw.append(wilcoxon_p(differences))
    unadjusted = np.array(raw)
    how = f"{adjust}-adjusted" if adjust else "unadjusted"
    info = describe_test(
        "wilcoxon", tally, adjust,
        f"pairwise Wilcoxon signed-rank tests on the question-level rank differences of "
        f"{tally.n_questions} questions (each question's repeats and judges averaged into "
        f"one ranking; a pair uses the questions where both were ranked), p-values {how}.",
    )  # fmt: skip
    adjusted = adjust_pvalues(unadjusted, adjust)
    return info, square_matrix(adjusted, tally.names), square_matrix(unadjusted, tally.names)


def pooled_rank_sums(groups: list[dict[float, int]]) -> tuple[np.ndarray, np.ndarray, int, float]:
    """For groups of values given as value → count, ranked together: each group's sum of
    midranks and size, the pooled n and its Σ(t³ - t) (what Dunn and Kruskal–Wallis need)."""
    pooled = merge_counts(groups)
    rank_of = midrank_map(pooled)
    rank_sums = np.array([sum(c * rank_of[v] for v, c in g.items()) for g in groups], dtype=float)
    sizes = np.array([sum(g.values()) for g in groups], dtype=float)
    return rank_sums, sizes, sum(pooled.values()), tie_sum(pooled.values())
