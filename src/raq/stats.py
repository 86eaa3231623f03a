"""Statistics over judge ranks: which candidates really differ, and can the judges be trusted.

Input is a long DataFrame of ranks with columns question_id, repeat, judge, candidate, rank
(1 = best; ties share the average rank) and position (1-based presented position, may be NA).
A block is one (question_id, repeat, judge); it may lack a candidate whose answer failed.

Two tests are offered. "dunn" is the original article's Dunn test with Holm correction over all
ranks pooled by candidate; it treats ranks as independent samples, which they are not (each
block ranks the candidates together). "friedman" respects the blocked design: Friedman omnibus
over complete blocks, then the Conover or Nemenyi post-hoc.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
import scikit_posthocs as sp
from scipy import stats as ss

from raq.config import P_ADJUST_METHODS  # what scikit-posthocs hands to multipletests

# posthoc_conover_friedman also accepts this one (Tukey's studentized range instead of t).
SINGLE_STEP = "single-step"
TESTS = ("dunn", "friedman")
POSTHOCS = ("conover", "nemenyi")

BLOCK = ["question_id", "repeat", "judge"]
REQUIRED = [*BLOCK, "candidate", "rank"]


# ---------------------------------------------------------------------------------------------
# Result types


@dataclass(frozen=True)
class CandidateStats:
    """Rank summary of one candidate; the CI shows how much the mean depends on the questions."""

    name: str
    n_ranks: int
    mean_rank: float
    median_rank: float
    std_rank: float
    ci_low: float  # 95% bootstrap CI of the mean rank, resampling questions
    ci_high: float


@dataclass(frozen=True)
class PairResult:
    """One pairwise comparison, with effect sizes so a p-value never stands alone."""

    a: str
    b: str
    p_adjusted: float
    significant: bool
    mean_rank_diff: float  # mean_rank(a) - mean_rank(b); negative: a better
    win_rate_a: float  # share of paired comparisons a ranked better than b (ties 1/2)
    n_pairs: int


@dataclass(frozen=True)
class StatsResult:
    """Everything the report and the gate need from one analysis."""

    test: dict[str, Any]
    candidates: dict[str, CandidateStats]  # best mean rank first
    pvalues: pd.DataFrame  # square, sorted by name, diagonal 1.0
    pairs: list[PairResult]  # every unordered pair, a < b by name
    significant_pairs: list[tuple[str, str, float]]
    power_hint: str | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form: plain Python numbers, NaN as None."""
        pvalues = {
            str(a): {str(b): self.pvalues.at[a, b] for b in self.pvalues.columns}
            for a in self.pvalues.index
        }
        return _jsonable(
            {
                "test": self.test,
                "candidates": {name: asdict(c) for name, c in self.candidates.items()},
                "pvalues": pvalues,
                "pairs": [asdict(p) for p in self.pairs],
                "significant_pairs": [list(p) for p in self.significant_pairs],
                "power_hint": self.power_hint,
            }
        )


def _jsonable(value: Any) -> Any:
    """Recursively turn numpy scalars into Python ones and NaN/NA into None."""
    if isinstance(value, dict):
        return {_jsonable_key(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is pd.NA or value is pd.NaT:
        return None
    return value


def _jsonable_key(key: Any) -> Any:
    return key.item() if isinstance(key, np.generic) else key


# ---------------------------------------------------------------------------------------------
# Input checks


def _prepare(ranks: pd.DataFrame) -> pd.DataFrame:
    """Validate and normalise the ranks frame so every function sees the same clean shape."""
    missing = [c for c in REQUIRED if c not in ranks.columns]
    if missing:
        raise ValueError(f"ranks lack the column(s) {', '.join(missing)}")
    if ranks.empty:
        raise ValueError("no ranks to analyse")
    df = pd.DataFrame(
        {
            "question_id": ranks["question_id"].astype(str).to_numpy(),
            "repeat": pd.to_numeric(ranks["repeat"]).astype(int).to_numpy(),
            "judge": ranks["judge"].astype(str).to_numpy(),
            "candidate": ranks["candidate"].astype(str).to_numpy(),
            "rank": pd.to_numeric(ranks["rank"], errors="coerce").astype(float).to_numpy(),
        }
    )
    position = ranks["position"] if "position" in ranks.columns else None
    df["position"] = (
        pd.to_numeric(position, errors="coerce").astype(float).to_numpy()
        if position is not None
        else np.nan
    )
    if df["rank"].isna().any():
        raise ValueError(f"{int(df['rank'].isna().sum())} rank value(s) are missing")
    duplicated = df.duplicated([*BLOCK, "candidate"])
    if duplicated.any():
        row = df[duplicated].iloc[0]
        raise ValueError(
            f"candidate '{row['candidate']}' is ranked twice in block (question "
            f"'{row['question_id']}', repeat {row['repeat']}, judge '{row['judge']}')"
        )
    return df


def _check_p_adjust(p_adjust: str | None, allow_single_step: bool) -> str | None:
    """Normalise p_adjust (None/'none' mean unadjusted) and reject what the tests cannot do."""
    if p_adjust is None or p_adjust == "" or str(p_adjust).lower() == "none":
        return None
    allowed = [*P_ADJUST_METHODS, *([SINGLE_STEP] if allow_single_step else [])]
    if p_adjust not in allowed:
        raise ValueError(
            f"unknown p_adjust method '{p_adjust}' (one of: {', '.join(allowed)}, or none)"
        )
    return p_adjust


def _block_matrix(df: pd.DataFrame) -> pd.DataFrame:
    """Blocks × candidates (sorted by name) of ranks; NaN where a candidate is absent."""
    matrix = df.set_index([*BLOCK, "candidate"])["rank"].unstack("candidate")
    return matrix.reindex(columns=sorted(matrix.columns))


def _complete_rows(matrix: pd.DataFrame) -> pd.DataFrame:
    """Complete blocks, re-ranked within each block so every row is a ranking of all columns."""
    complete = matrix.dropna(axis=0, how="any")
    if complete.empty:
        return complete
    reranked = ss.rankdata(complete.to_numpy(), axis=1, method="average")
    return pd.DataFrame(reranked, index=complete.index, columns=complete.columns)


# ---------------------------------------------------------------------------------------------
# Main analysis


def analyse(
    ranks: pd.DataFrame,
    *,
    test: str = "dunn",
    p_adjust: str | None = "holm",
    alpha: float = 0.05,
    posthoc: str = "conover",
    n_boot: int = 2000,
    seed: int = 0,
) -> StatsResult:
    """Candidate rank statistics plus pairwise significance with the chosen test."""
    if test not in TESTS:
        raise ValueError(f"unknown test '{test}' (one of: {', '.join(TESTS)})")
    if posthoc not in POSTHOCS:
        raise ValueError(f"unknown post-hoc '{posthoc}' (one of: {', '.join(POSTHOCS)})")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie strictly between 0 and 1, got {alpha}")
    adjust = _check_p_adjust(
        p_adjust, allow_single_step=test == "friedman" and posthoc == "conover"
    )
    df = _prepare(ranks)
    names = sorted(df["candidate"].unique())
    if len(names) < 2:
        raise ValueError(f"need at least 2 candidates to compare, got {len(names)}: {names}")

    if test == "dunn":
        info, pvalues, unadjusted = _dunn(df, names, adjust)
    else:
        info, pvalues, unadjusted = _friedman(df, names, adjust, posthoc)
    info["alpha"] = alpha

    candidates = _candidate_stats(df, n_boot=n_boot, seed=seed)
    pairs = _pairs(df, names, pvalues, candidates, alpha)
    significant = [(p.a, p.b, p.p_adjusted) for p in pairs if p.significant]
    hint = None if significant else _power_hint(info, candidates, unadjusted, alpha)
    return StatsResult(info, candidates, pvalues, pairs, significant, hint)


def _dunn(
    df: pd.DataFrame, names: list[str], adjust: str | None
) -> tuple[dict[str, Any], pd.DataFrame, pd.DataFrame]:
    """Dunn's test over all ranks pooled by candidate (the article's choice, kept as default)."""
    data = df[["rank", "candidate"]]
    pvalues = sp.posthoc_dunn(data, val_col="rank", group_col="candidate", p_adjust=adjust)
    unadjusted = sp.posthoc_dunn(data, val_col="rank", group_col="candidate", p_adjust=None)
    how = f"{adjust}-adjusted" if adjust else "unadjusted"
    info = {
        "name": "dunn",
        "p_adjust": adjust,
        "posthoc": None,
        "description": (
            f"Dunn's test on all {len(df)} ranks pooled by candidate, p-values {how} "
            "(the original RAQ method); it treats ranks as independent samples although each "
            "(question, repeat, judge) block ranks the candidates together, so the blocked "
            "Friedman test is the stricter alternative."
        ),
        "n_questions": int(df["question_id"].nunique()),
        "n_blocks": int(df.groupby(BLOCK).ngroups),
        "n_ranks": len(df),
    }
    return info, _square(pvalues, names), _square(unadjusted, names)


def _friedman(
    df: pd.DataFrame, names: list[str], adjust: str | None, posthoc: str
) -> tuple[dict[str, Any], pd.DataFrame, pd.DataFrame]:
    """Friedman omnibus + post-hoc over complete blocks: the design the data actually has."""
    matrix = _block_matrix(df)
    complete = _complete_rows(matrix)
    n_complete, n_dropped = len(complete), len(matrix) - len(complete)
    if n_complete < 2:
        raise ValueError(
            f"the Friedman test needs at least 2 complete blocks (every candidate ranked in the "
            f"same question, repeat and judge), found {n_complete} of {len(matrix)}; "
            "use test='dunn' instead"
        )
    statistic, p_value = friedman_statistic(complete.to_numpy())
    if posthoc == "conover":
        pvalues = sp.posthoc_conover_friedman(complete, p_adjust=adjust)
        unadjusted = sp.posthoc_conover_friedman(complete, p_adjust=None)
        post = f"Conover post-hoc with {adjust or 'no'} p-adjustment"
    else:
        adjust = None  # Nemenyi controls the family-wise error itself
        pvalues = unadjusted = sp.posthoc_nemenyi_friedman(complete)
        post = "Nemenyi post-hoc (its own family-wise control, no further p-adjustment)"
    kept = complete.reset_index()
    info = {
        "name": "friedman",
        "p_adjust": adjust,
        "posthoc": posthoc,
        "description": (
            f"Friedman test over {n_complete} complete (question, repeat, judge) blocks, ranks "
            f"re-ranked within each block, then {post}; the blocked design compares candidates "
            f"within the same question; {n_dropped} incomplete block(s) (a candidate's answer "
            "missing) were dropped from the test."
        ),
        "n_questions": int(kept["question_id"].nunique()),
        "n_blocks": len(matrix),
        "n_ranks": len(df),
        "statistic": statistic,
        "p_value": p_value,
        "df": len(names) - 1,
        "n_complete_blocks": n_complete,
        "n_incomplete_blocks_dropped": n_dropped,
    }
    return info, _square(pvalues, names), _square(unadjusted, names)


def friedman_statistic(matrix: np.ndarray) -> tuple[float, float]:
    """Tie-corrected Friedman χ² and p for blocks × groups; scipy's, plus k = 2 it refuses."""
    n, k = matrix.shape
    if k >= 3:
        result = ss.friedmanchisquare(*matrix.T)
        return float(result.statistic), float(result.pvalue)
    # Same formula as scipy (which requires k >= 3); for k = 2 it is the two-sided sign test χ².
    ranks = ss.rankdata(matrix, axis=1, method="average")
    ties = sum(_tie_sum(row, power=3) for row in ranks)
    correction = 1 - ties / (k * (k * k - 1) * n)
    if correction == 0:
        return math.nan, math.nan
    ssbn = float(np.sum(ranks.sum(axis=0) ** 2))
    statistic = (12.0 / (k * n * (k + 1)) * ssbn - 3 * n * (k + 1)) / correction
    return statistic, float(ss.chi2.sf(statistic, k - 1))


def _tie_sum(values: np.ndarray, power: int = 3) -> float:
    """Σ (t^power - t) over groups of tied values: the usual tie correction term."""
    _, counts = np.unique(values, return_counts=True)
    return float(np.sum(counts.astype(float) ** power - counts))


def _square(pvalues: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    """scikit-posthocs output reindexed to the sorted candidate names with a 1.0 diagonal."""
    pvalues = pvalues.copy()
    pvalues.index = pvalues.index.astype(str)
    pvalues.columns = pvalues.columns.astype(str)
    values = pvalues.reindex(index=names, columns=names).to_numpy(dtype=float, copy=True)
    np.fill_diagonal(values, 1.0)
    return pd.DataFrame(values, index=names, columns=names)


def _pairs(
    df: pd.DataFrame,
    names: list[str],
    pvalues: pd.DataFrame,
    candidates: dict[str, CandidateStats],
    alpha: float,
) -> list[PairResult]:
    """Every unordered pair with p-value, mean-rank difference and head-to-head win rate."""
    wins, counts = _head_to_head(df, names)
    pairs = []
    for a, b in itertools.combinations(names, 2):
        p = float(pvalues.at[a, b])
        n = int(counts.at[a, b])
        pairs.append(
            PairResult(
                a=a,
                b=b,
                p_adjusted=p,
                significant=bool(p < alpha),  # NaN compares False
                mean_rank_diff=candidates[a].mean_rank - candidates[b].mean_rank,
                win_rate_a=float(wins.at[a, b]) / n if n else math.nan,
                n_pairs=n,
            )
        )
    return pairs


# ---------------------------------------------------------------------------------------------
# Candidate statistics and bootstrap


def candidate_stats(
    ranks: pd.DataFrame, *, n_boot: int = 2000, seed: int = 0
) -> dict[str, CandidateStats]:
    """Per-candidate rank summary with a question-bootstrap CI, best mean rank first."""
    return _candidate_stats(_prepare(ranks), n_boot=n_boot, seed=seed)


def _candidate_stats(df: pd.DataFrame, *, n_boot: int, seed: int) -> dict[str, CandidateStats]:
    # Takes the prepared frame: preparing it again here and in the bootstrap held three copies
    # of the ranks at once.
    grouped = df.groupby("candidate")["rank"]
    summary = pd.DataFrame(
        {
            "n": grouped.count(),
            "mean": grouped.mean(),
            "median": grouped.median(),
            "std": grouped.std(ddof=1),
        }
    )
    low, high = _bootstrap_mean_rank_ci(df, n_boot=n_boot, seed=seed)
    order = sorted(summary.index, key=lambda name: (summary.at[name, "mean"], name))
    return {
        name: CandidateStats(
            name=name,
            n_ranks=int(summary.at[name, "n"]),
            mean_rank=float(summary.at[name, "mean"]),
            median_rank=float(summary.at[name, "median"]),
            std_rank=float(summary.at[name, "std"]),
            ci_low=float(low[name]),
            ci_high=float(high[name]),
        )
        for name in order
    }


def bootstrap_mean_rank_ci(
    ranks: pd.DataFrame, *, n_boot: int = 2000, seed: int = 0, level: float = 0.95
) -> tuple[pd.Series, pd.Series]:
    """Percentile CI of each candidate's mean rank, resampling whole questions.

    Questions are the sampling unit (repeats and judges of one question are not independent),
    so each draw takes question_ids with replacement and all their blocks come along.
    """
    return _bootstrap_mean_rank_ci(_prepare(ranks), n_boot=n_boot, seed=seed, level=level)


def _bootstrap_mean_rank_ci(
    df: pd.DataFrame, *, n_boot: int, seed: int, level: float = 0.95
) -> tuple[pd.Series, pd.Series]:
    if n_boot < 1:
        raise ValueError(f"n_boot must be at least 1, got {n_boot}")
    questions = sorted(df["question_id"].unique())
    sums = df.pivot_table(
        index="question_id", columns="candidate", values="rank", aggfunc="sum", fill_value=0.0
    ).reindex(index=questions)
    counts = df.pivot_table(
        index="question_id", columns="candidate", values="rank", aggfunc="count", fill_value=0
    ).reindex(index=questions, columns=sums.columns)
    rng = np.random.default_rng(seed)
    n_q = len(questions)
    means = np.empty((n_boot, sums.shape[1]))
    # Chunks of resamples bound the weight matrix (≤ 2 MB whatever the number of questions),
    # so memory stays flat as datasets grow.
    chunk = max(1, min(256, 262_144 // max(n_q, 1)))
    for start in range(0, n_boot, chunk):
        size = min(chunk, n_boot - start)
        draws = rng.integers(0, n_q, size=(size, n_q))
        weights = np.zeros((size, n_q))
        np.add.at(weights, (np.arange(size)[:, None], draws), 1.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            means[start : start + size] = (weights @ sums.to_numpy()) / (
                weights @ counts.to_numpy(dtype=float)
            )
    tail = (1 - level) / 2 * 100
    low, high = np.nanpercentile(means, [tail, 100 - tail], axis=0)
    return pd.Series(low, index=sums.columns), pd.Series(high, index=sums.columns)


# ---------------------------------------------------------------------------------------------
# Power hint


def _power_hint(
    info: dict[str, Any],
    candidates: dict[str, CandidateStats],
    unadjusted: pd.DataFrame,
    alpha: float,
) -> str | None:
    """Rough number of questions at which best vs worst would become significant."""
    names = list(candidates)
    if len(names) < 2:
        return None
    best, worst = names[0], names[-1]
    k, n_q = len(names), info["n_questions"]
    m = k * (k - 1) // 2
    if info["name"] == "friedman" and info["posthoc"] == "nemenyi":
        p = float(unadjusted.at[best, worst])
        stat = float(ss.studentized_range.isf(p, k, np.inf)) if 0 < p < 1 else math.nan
        crit = float(ss.studentized_range.isf(alpha, k, np.inf))
        method = (
            "Nemenyi studentized-range statistic of the observed mean-rank difference, "
            f"scaled by √n until it reaches the α={alpha:g} critical value"
        )
    else:
        p = float(unadjusted.at[best, worst])
        stat = float(ss.norm.isf(p / 2)) if 0 < p < 1 else math.nan
        step = alpha / m if info["p_adjust"] else alpha
        crit = float(ss.norm.isf(step / 2))
        test = "Dunn z" if info["name"] == "dunn" else "Conover t (as a normal z)"
        threshold = f"Holm/Bonferroni first-step threshold α/m = {alpha:g}/{m}"
        if not info["p_adjust"]:
            threshold = f"unadjusted threshold α = {alpha:g}"
        method = (
            f"normal approximation: the {test} of the observed mean-rank difference, with the "
            f"observed variance, grows with √(questions) until it reaches the {threshold}"
        )
    prefix = f"Nothing is significant at α={alpha:g} with {n_q} questions."
    if not math.isfinite(stat) or stat <= 0:
        return (
            f"{prefix} The best ({best}) and worst ({worst}) candidates do not differ in the "
            "observed ranks, so no number of questions can be estimated from them."
        )
    needed = max(n_q + 1, math.ceil(n_q * (crit / stat) ** 2))
    return (
        f"{prefix} Rough estimate: ~{_round_sig(needed):,} questions for {best} vs {worst} "
        f"(best vs worst mean rank) to reach significance, if the difference is real ({method})."
    )


def _round_sig(value: float, digits: int = 2) -> int:
    """Round to a few significant digits: the estimate is no more precise than that."""
    if value <= 0:
        return 0
    magnitude = 10 ** max(0, math.floor(math.log10(value)) - digits + 1)
    return int(math.ceil(value / magnitude) * magnitude)


# ---------------------------------------------------------------------------------------------
# Head-to-head


def _head_to_head(df: pd.DataFrame, names: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Wins of row over column (ties 1/2) and number of blocks where both were ranked."""
    matrix = _block_matrix(df).reindex(columns=names).to_numpy()
    k = len(names)
    wins = np.zeros((k, k))
    counts = np.zeros((k, k), dtype=int)
    for i, j in itertools.permutations(range(k), 2):
        a, b = matrix[:, i], matrix[:, j]
        both = ~np.isnan(a) & ~np.isnan(b)
        counts[i, j] = int(both.sum())
        wins[i, j] = float(np.sum(a[both] < b[both]) + 0.5 * np.sum(a[both] == b[both]))
    return pd.DataFrame(wins, index=names, columns=names), pd.DataFrame(
        counts, index=names, columns=names
    )


def win_rates(ranks: pd.DataFrame) -> pd.DataFrame:
    """Share of paired comparisons where the row candidate beat the column one (ties 1/2).

    Shown next to p-values because it is an effect size anyone can read. Diagonal NaN.
    """
    df = _prepare(ranks)
    names = sorted(df["candidate"].unique())
    wins, counts = _head_to_head(df, names)
    with np.errstate(invalid="ignore", divide="ignore"):
        rates = wins.to_numpy() / counts.to_numpy()
    rates = np.where(counts.to_numpy() > 0, rates, np.nan)
    np.fill_diagonal(rates, np.nan)
    return pd.DataFrame(rates, index=names, columns=names)


# ---------------------------------------------------------------------------------------------
# Judge diagnostics


def position_bias(ranks: pd.DataFrame, alpha: float = 0.05) -> dict[str, Any]:
    """Per judge: does the presented position predict the rank? (Kruskal–Wallis of rank by position)

    With counterbalanced positions a position effect does not bias candidates, but it shows a
    judge that reads order rather than content.
    """
    df = _prepare(ranks)
    judges: dict[str, Any] = {}
    for judge, rows in df.groupby("judge", sort=True):
        judges[str(judge)] = _position_bias_one(rows.dropna(subset=["position"]), alpha)
    used = sum(j["n"] for j in judges.values())
    return {
        "description": (
            "Kruskal–Wallis test of rank by presented position per judge, over rows with a "
            f"position; flagged when p < {alpha:g} (the judge's ranks depend on where an answer "
            "was shown)."
        ),
        "alpha": alpha,
        "n": used,
        "judges": judges,
    }


def _position_bias_one(rows: pd.DataFrame, alpha: float) -> dict[str, Any]:
    by_position = rows.groupby("position")["rank"]
    groups = [g.to_numpy() for _, g in by_position]
    statistic = p_value = math.nan
    if len(groups) >= 2 and len(rows) > len(groups):
        try:
            result = ss.kruskal(*groups)
            statistic, p_value = float(result.statistic), float(result.pvalue)
        except ValueError:  # e.g. all values identical in older scipy
            pass
    return {
        "mean_rank_by_position": {int(p): float(v) for p, v in by_position.mean().items()},
        "n_by_position": {int(p): int(v) for p, v in by_position.count().items()},
        "statistic": statistic,
        "p_value": p_value,
        "flagged": bool(p_value < alpha),
        "n": len(rows),
    }


def kendall_w(matrix: np.ndarray) -> float:
    """Kendall's W (tie-corrected) for raters (rows) ranking items (columns); NaN if undefined."""
    matrix = np.asarray(matrix, dtype=float)
    m, n = matrix.shape
    if m < 2 or n < 2:
        return math.nan
    ranks = ss.rankdata(matrix, axis=1, method="average")
    totals = ranks.sum(axis=0)
    s = float(np.sum((totals - totals.mean()) ** 2))
    ties = sum(_tie_sum(row) for row in ranks)
    denominator = m**2 * (n**3 - n) - m * ties
    return 12 * s / denominator if denominator > 0 else math.nan


def self_consistency(ranks: pd.DataFrame) -> dict[str, Any]:
    """Per judge: Kendall's W across repeats of a question (1 = it always agrees with itself)."""
    df = _prepare(ranks)
    judges: dict[str, Any] = {}
    for judge, rows in df.groupby("judge", sort=True):
        complete = _complete_rows(_block_matrix(rows))
        values = []
        for _, blocks in complete.groupby(level="question_id"):
            w = kendall_w(blocks.to_numpy()) if len(blocks) >= 2 else math.nan
            if math.isfinite(w):
                values.append(w)
        judges[str(judge)] = {
            "mean_w": float(np.mean(values)) if values else math.nan,
            "n_questions": len(values),
            "n": len(values),
        }
    return {
        "description": (
            "Kendall's W (tie-corrected) per judge and question with the repeats as raters and "
            "the candidates as items, over complete blocks, averaged over questions with at "
            "least 2 repeats; 1 means the judge ranks the same way every time."
        ),
        "n": sum(j["n_questions"] for j in judges.values()),
        "judges": judges,
    }


def judge_agreement(ranks: pd.DataFrame) -> dict[str, Any] | None:
    """Panel only: do judges rank the same answers alike? (Kendall tau between judges, and W)"""
    df = _prepare(ranks)
    judges = sorted(df["judge"].unique())
    if len(judges) < 2:
        return None
    matrix = _block_matrix(df)
    taus: dict[tuple[str, str], list[float]] = {p: [] for p in itertools.combinations(judges, 2)}
    ws: list[float] = []
    for _, item in matrix.groupby(level=["question_id", "repeat"]):
        by_judge = item.droplevel(["question_id", "repeat"])
        for a, b in taus:
            if a in by_judge.index and b in by_judge.index:
                tau = _tau(by_judge.loc[a].to_numpy(), by_judge.loc[b].to_numpy())
                if math.isfinite(tau):
                    taus[(a, b)].append(tau)
        if len(by_judge) == len(judges) and not by_judge.isna().any().any():
            w = kendall_w(by_judge.to_numpy())
            if math.isfinite(w):
                ws.append(w)
    all_taus = [t for values in taus.values() for t in values]
    return {
        "description": (
            "Agreement between judges on the same (question, repeat): mean pairwise Kendall "
            "tau over the candidates both judges ranked, and Kendall's W (tie-corrected) with "
            "the judges as raters where every judge ranked every candidate; 1 is full agreement."
        ),
        "mean_tau": float(np.mean(all_taus)) if all_taus else math.nan,
        "n_tau": len(all_taus),
        "pairs": [
            {"a": a, "b": b, "mean_tau": float(np.mean(v)) if v else math.nan, "n": len(v)}
            for (a, b), v in taus.items()
        ],
        "kendall_w": float(np.mean(ws)) if ws else math.nan,
        "n_w": len(ws),
        "n": len(all_taus),
    }


def _tau(a: np.ndarray, b: np.ndarray) -> float:
    """Kendall tau over the items both rankings contain; NaN when fewer than 2 or constant."""
    both = ~np.isnan(a) & ~np.isnan(b)
    if both.sum() < 2:
        return math.nan
    return float(ss.kendalltau(a[both], b[both]).statistic)


def panel_aggregate(ranks: pd.DataFrame) -> pd.DataFrame | None:
    """Panel only: per-judge mean rank per candidate, with median and std across judges.

    The article's proposal against single-judge bias: a candidate that only one judge favours
    shows a large std.
    """
    df = _prepare(ranks)
    judges = sorted(df["judge"].unique())
    if len(judges) < 2:
        return None
    table = df.pivot_table(index="candidate", columns="judge", values="rank", aggfunc="mean")
    table = table.reindex(columns=judges)
    table.columns = [str(c) for c in table.columns]
    per_judge = table.to_numpy()
    table["median"] = np.nanmedian(per_judge, axis=1)
    table["std"] = pd.DataFrame(per_judge).std(axis=1, ddof=1).to_numpy()
    table.index.name = "candidate"
    return table.sort_values(["median"], kind="stable")


def length_bias(ranks: pd.DataFrame, words: pd.DataFrame) -> dict[str, Any]:
    """Spearman correlation of answer length with rank: does the judge reward verbosity?

    Negative rho means longer answers get better (lower) ranks. Joined on question_id and
    candidate (and repeat when words has it); duplicate word counts are averaged.
    """
    df = _prepare(ranks)
    missing = [c for c in ("question_id", "candidate", "words") if c not in words.columns]
    if missing:
        raise ValueError(f"words lack the column(s) {', '.join(missing)}")
    keys = ["question_id", "candidate"] + (["repeat"] if "repeat" in words.columns else [])
    w = words[[*keys, "words"]].copy()
    w["question_id"] = w["question_id"].astype(str)
    w["candidate"] = w["candidate"].astype(str)
    if "repeat" in keys:
        w["repeat"] = pd.to_numeric(w["repeat"]).astype(int)
    w["words"] = pd.to_numeric(w["words"], errors="coerce")
    w = w.dropna(subset=["words"]).groupby(keys, as_index=False)["words"].mean()
    joined = df.merge(w, on=keys, how="inner")
    result = _spearman(joined)
    result["judges"] = {str(j): _spearman(rows) for j, rows in joined.groupby("judge", sort=True)}
    result["description"] = (
        "Spearman correlation of answer length in words with rank over joined (answer, rank) "
        "rows; negative rho means longer answers get better ranks."
    )
    return result


def _spearman(rows: pd.DataFrame) -> dict[str, Any]:
    rho = p_value = math.nan
    if len(rows) >= 3 and rows["words"].nunique() > 1 and rows["rank"].nunique() > 1:
        result = ss.spearmanr(rows["words"], rows["rank"])
        rho, p_value = float(result.statistic), float(result.pvalue)
    return {"rho": rho, "p_value": p_value, "n": len(rows)}
