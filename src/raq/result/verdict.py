"""The verdict in words: one line per significant pair, saying which candidate is better, by
how much and on what evidence.

Every rendering (terminal, report.md, report.html, summary.json, ``raq gate``) takes its lines
from here, so the pairs read the same way and in the same order everywhere.
"""

from __future__ import annotations

import math
from typing import Any


def test_label(test: dict[str, Any]) -> str:
    """A short name of the test that made the verdict, e.g. "Friedman–Conover, Holm"."""
    name = test.get("name")
    if name is None:
        return "no test"
    label = {"dunn": "Dunn", "wilcoxon": "Wilcoxon signed-rank"}.get(name, "Friedman")
    posthoc = test.get("posthoc")
    if name == "friedman" and posthoc:
        label += "–" + {"ztest": "z on mean ranks"}.get(posthoc, posthoc.capitalize())
    adjust = test.get("p_adjust")
    return f"{label}, {adjust}" if adjust else label


def oriented(pair: dict[str, Any]) -> tuple[str, str, float]:
    """(better, worse, the better one's win rate) of a pair from summary.json."""
    if pair["mean_rank_diff"] <= 0:
        return pair["a"], pair["b"], pair["win_rate_a"]
    return pair["b"], pair["a"], 1 - pair["win_rate_a"]


def p_phrase(pair: dict[str, Any], digits: str = ".2g") -> str:
    """A pair's adjusted p-value in words: "adjusted p = 0.012", or why it has none. A test
    gives no p-value when its statistic is undefined (0 / 0), as when every question ranked
    the candidates equal (a judge that ties identical answers, two copies of one model)."""
    p = pair.get("p_adjusted")
    if p == 0:  # below the smallest float: "p = 0" would claim certainty
        return "adjusted p < 1e-300"
    if _has_p(pair):
        return f"adjusted p = {p:{digits}}"
    if _ranked_equal_throughout(pair):
        return f"no p-value: all {pair['n_pairs']} shared questions ranked them equal"
    return "no p-value: the test's statistic is undefined"


def _has_p(pair: dict[str, Any]) -> bool:
    p = pair.get("p_adjusted")
    return p is not None and math.isfinite(p)


def _ranked_equal_throughout(pair: dict[str, Any]) -> bool:
    return pair.get("paired_diff") == 0 and pair.get("paired_diff_sd") == 0


def verdict_lines(summary: dict[str, Any]) -> list[str]:
    """One line per significant pair, best-placed winner first; a single line when no pair
    differs or there is no verdict."""
    test = summary.get("test") or {}
    if test.get("name") is None:
        error = str(test.get("error") or "the run has no statistics")
        for prefix in ("no verdict: ", "no statistics: "):
            error = error.removeprefix(prefix)
        return [f"No verdict: {error}."]
    candidates = summary["candidates"]
    alpha = test.get("alpha", 0.05)
    label = test_label(test)
    found = []
    for pair in summary.get("pairs", []):
        if not pair["significant"]:
            continue
        better, worse, win = oriented(pair)
        mean_better = candidates[better]["mean_rank"]
        mean_worse = candidates[worse]["mean_rank"]
        won = f"wins {win:.0%}" if win is not None and math.isfinite(win) else "wins –"
        line = (
            f"{better} beats {worse}: {won} of {pair['n_pairs']} questions (ties count half), "
            f"mean rank {mean_better:.2f} vs {mean_worse:.2f}, {p_phrase(pair)} ({label})"
        )
        found.append(((mean_better, mean_worse, better, worse), line))
    if not found:
        n = test.get("n_questions", summary.get("n_questions_ranked"))
        return [f"No pair of candidates differs significantly at α = {alpha:g} over {n} questions "
                f"({label})."]  # fmt: skip
    return [line for _, line in sorted(found)]


def tradeoff_lines(summary: dict[str, Any]) -> list[str]:
    """Plain sentences for the pairs the test does not separate: what else tells them apart
    (speed, and cost where prices are set)."""
    test = summary.get("test") or {}
    if test.get("name") is None:
        return []
    candidates = summary["candidates"]
    out = []
    for pair in summary.get("pairs", []):
        if pair["significant"]:
            continue
        a, b = pair["a"], pair["b"]
        evidence = p_phrase(pair)
        if _has_p(pair) or not _ranked_equal_throughout(pair):  # that phrase names them
            evidence += f", {pair['n_pairs']} questions"
        line = f"{a} and {b} do not differ significantly in quality ({evidence})"
        speed_a, speed_b = (candidates[n].get("words_per_second") for n in (a, b))
        if speed_a and speed_b:
            fast, slow = (a, b) if speed_a >= speed_b else (b, a)
            ratio = max(speed_a, speed_b) / min(speed_a, speed_b)
            line += f"; {fast} answers {ratio:.1f}× faster than {slow} (words/s)"
        cost_a, cost_b = ((candidates[n].get("cost_usd") or {}).get("per_answer") for n in (a, b))
        if cost_a and cost_b:
            cheap, dear = (a, b) if cost_a <= cost_b else (b, a)
            ratio = max(cost_a, cost_b) / min(cost_a, cost_b)
            line += f"; {cheap} costs {ratio:.1f}× less than {dear} per answer"
        out.append(line + ".")
    return out
