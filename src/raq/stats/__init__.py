"""Statistics over judge ranks: which candidates really differ, and can the judges be trusted.

The question is the unit: each question's judgments (a judge's repeats, a panel's judges) fold
into one ranking before any test (``tally.consensus_ranks``). Each concept has its module:

- ``tally``: running tallies fed a question at a time (what every test needs, never a table);
- ``table``: a ranks table (question_id, repeat, judge, candidate, rank, position) checked and
  fed to the tallies — how ``raq stats`` reads any ranks file;
- ``rank_tests``: Dunn (the original RAQ method), Friedman with Conover, Nemenyi or Demšar's z,
  pairwise Wilcoxon; ``analysis.analyse`` runs one of them with the candidates' statistics;
- ``candidates``: rank summaries, the question bootstrap, win rates;
- ``power``: questions needed for 80% power at the observed effect;
- ``diagnostics``: position bias, self-consistency, panel agreement, length bias;
- ``ranks`` and ``concordance``: rank arithmetic and Kendall's W and tau.

The formulas are scikit-posthocs' and scipy's; ``tests/test_stats_reference.py`` holds every
result to those libraries run on the full table folded to question level.

The names below load their module on first use: the run reads its records during the requests
with the tallies alone (``tally``, ``answer_summary``, ``controls``), without scipy and pandas.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from raq.core.lazy import lazy_names

if TYPE_CHECKING:
    from raq.stats.analysis import analyse
    from raq.stats.candidates import bootstrap_mean_rank_ci, candidate_stats, win_rates
    from raq.stats.concordance import kendall_tau, kendall_w
    from raq.stats.diagnostics import (
        judge_agreement,
        length_bias,
        length_bias_counts,
        panel_aggregate,
        position_bias,
        self_consistency,
        spearman_counts,
    )
    from raq.stats.power import questions_for_power
    from raq.stats.rank_tests import DUNN_CAVEAT, POSTHOCS, SINGLE_STEP, TESTS, question_ranks
    from raq.stats.results import CandidateStats, PairResult, StatsResult
    from raq.stats.table import rank_stream, rank_tally

_LAZY = {
    "analyse": "raq.stats.analysis",
    "bootstrap_mean_rank_ci": "raq.stats.candidates",
    "candidate_stats": "raq.stats.candidates",
    "win_rates": "raq.stats.candidates",
    "kendall_tau": "raq.stats.concordance",
    "kendall_w": "raq.stats.concordance",
    "judge_agreement": "raq.stats.diagnostics",
    "length_bias": "raq.stats.diagnostics",
    "length_bias_counts": "raq.stats.diagnostics",
    "panel_aggregate": "raq.stats.diagnostics",
    "position_bias": "raq.stats.diagnostics",
    "self_consistency": "raq.stats.diagnostics",
    "spearman_counts": "raq.stats.diagnostics",
    "questions_for_power": "raq.stats.power",
    "DUNN_CAVEAT": "raq.stats.rank_tests",
    "POSTHOCS": "raq.stats.rank_tests",
    "SINGLE_STEP": "raq.stats.rank_tests",
    "TESTS": "raq.stats.rank_tests",
    "question_ranks": "raq.stats.rank_tests",
    "CandidateStats": "raq.stats.results",
    "PairResult": "raq.stats.results",
    "StatsResult": "raq.stats.results",
    "rank_stream": "raq.stats.table",
    "rank_tally": "raq.stats.table",
}

__all__ = [
    "DUNN_CAVEAT",
    "POSTHOCS",
    "SINGLE_STEP",
    "TESTS",
    "CandidateStats",
    "PairResult",
    "StatsResult",
    "analyse",
    "bootstrap_mean_rank_ci",
    "candidate_stats",
    "judge_agreement",
    "kendall_tau",
    "kendall_w",
    "length_bias",
    "length_bias_counts",
    "panel_aggregate",
    "position_bias",
    "question_ranks",
    "questions_for_power",
    "rank_stream",
    "rank_tally",
    "self_consistency",
    "spearman_counts",
    "win_rates",
]


__getattr__ = lazy_names(__name__, _LAZY)
