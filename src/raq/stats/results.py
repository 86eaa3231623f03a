"""What an analysis returns: per-candidate rank summaries, pairs with effect sizes, the whole
result and its JSON form."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from html import escape
from typing import Any

import numpy as np
import pandas as pd

from raq.core.numbers import fmt, fmt_p


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
    win_rate_a: float  # share of shared questions a ranked better than b (ties 1/2)
    n_pairs: int  # questions where both were ranked
    # Over those questions: the mean and sd of the rank difference a - b, and the sd of a's
    # per-question win (1, 1/2, 0); what a confidence bound on either needs (raq gate).
    paired_diff: float = math.nan
    paired_diff_sd: float = math.nan
    win_sd: float = math.nan


@dataclass(frozen=True)
class StatsResult:
    """Everything the report and the gate need from one analysis."""

    test: dict[str, Any]
    candidates: dict[str, CandidateStats]  # best mean rank first
    pvalues: pd.DataFrame  # square, sorted by name, diagonal 1.0
    pairs: list[PairResult]  # every unordered pair, a < b by name
    significant_pairs: list[tuple[str, str, float]]
    power_hint: str | None
    power: dict[str, Any] | None = None  # questions needed for 80% power, per pair

    def _repr_html_(self) -> str:  # a notebook shows tables, not the dataclass repr
        return stats_html(self)

    def __repr__(self) -> str:
        return stats_text(self)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form: plain Python numbers, NaN as None."""
        pvalues = {
            str(a): {str(b): self.pvalues.at[a, b] for b in self.pvalues.columns}
            for a in self.pvalues.index
        }
        return jsonable(
            {
                "test": self.test,
                "candidates": {name: asdict(c) for name, c in self.candidates.items()},
                "pvalues": pvalues,
                "pairs": [asdict(p) for p in self.pairs],
                "significant_pairs": [list(p) for p in self.significant_pairs],
                "power_hint": self.power_hint,
                "power": self.power,
            }
        )


def jsonable(value: Any) -> Any:
    """Recursively turn numpy scalars into Python ones and NaN/NA into None."""
    if isinstance(value, dict):
        return {_jsonable_key(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is pd.NA or value is pd.NaT:
        return None
    return value


def _jsonable_key(key: Any) -> Any:
    return key.item() if isinstance(key, np.generic) else key


# How it displays: tables in a notebook and a REPL instead of the dataclass repr.


def _candidates_frame(stats: StatsResult) -> pd.DataFrame:
    import pandas as pd

    rows = [
        {
            "candidate": name,
            "mean rank": fmt(c.mean_rank),
            "95% CI": f"{fmt(c.ci_low)}–{fmt(c.ci_high)}",
            "median": fmt(c.median_rank),
            "std": fmt(c.std_rank),
            "n ranks": c.n_ranks,
        }
        for name, c in stats.candidates.items()
    ]
    return pd.DataFrame(rows).set_index("candidate")


def _pairs_frame(stats: StatsResult) -> pd.DataFrame:
    import pandas as pd

    rows = []
    for p in stats.pairs:
        better, worse = (p.a, p.b) if p.mean_rank_diff <= 0 else (p.b, p.a)
        win = p.win_rate_a if better == p.a else 1 - p.win_rate_a
        rows.append(
            {
                "better": better,
                "worse": worse,
                "adjusted p": fmt_p(p.p_adjusted),
                "significant": "yes" if p.significant else "no",
                "mean rank difference": fmt(abs(p.mean_rank_diff)),
                "win rate of the better": fmt(win),
                "shared questions": p.n_pairs,
            }
        )
    return pd.DataFrame(rows)


def _test_line(test: dict[str, Any]) -> str:
    return str(test.get("description") or test.get("name") or "no test")


def stats_text(stats: StatsResult) -> str:
    lines = [f"StatsResult: {_test_line(stats.test)}", "", _candidates_frame(stats).to_string()]
    if stats.pairs:
        lines += ["", _pairs_frame(stats).to_string(index=False)]
    if stats.power_hint:
        lines += ["", stats.power_hint]
    return "\n".join(lines)


def stats_html(stats: StatsResult) -> str:
    parts = [
        f"<p><strong>Test:</strong> {escape(_test_line(stats.test))}</p>",
        _candidates_frame(stats).to_html(),
    ]
    if stats.pairs:
        parts.append(_pairs_frame(stats).to_html(index=False))
    if stats.power_hint:
        parts.append(f"<p>{escape(stats.power_hint)}</p>")
    return "<div>" + "".join(parts) + "</div>"
