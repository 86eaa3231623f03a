"""Which candidates differ: the test, the adjusted p-values, the significant pairs with their
effect sizes, Dunn–Holm for comparison with the article, and the same test per judge."""

from __future__ import annotations

import math
from html import escape
from typing import TYPE_CHECKING, Any

from raq.report.html.blocks import number, p_is, p_value, table

if TYPE_CHECKING:
    import pandas as pd

    from raq.result import RunResult


def _ordered_pvalues(result: RunResult) -> pd.DataFrame:
    pvalues = result.pvalues
    order = [n for n in result.summary_json["candidates"] if n in pvalues.index]
    order += [n for n in pvalues.index if n not in order]
    return pvalues.reindex(index=order, columns=order)


def differences_section(result: RunResult) -> str:
    summary = result.summary_json
    test = summary["test"]
    out = ["<h2>Which candidates differ</h2>"]
    if test.get("name") is None or result.pvalues.empty:
        out.append(f"<p>No test was run: {escape(str(test.get('error')))}.</p>")
        return "\n".join(out)
    alpha = test["alpha"]
    out.append(
        f"<p><strong>Test:</strong> {escape(str(test.get('description', test['name'])))}</p>"
    )
    if test.get("statistic") is not None:
        out.append(
            f"<p>Friedman omnibus: χ² = {number(test['statistic'])}, df = {test.get('df')}, "
            f"{p_is(test.get('p_value'))}, over {test.get('n_complete_blocks')} complete "
            "questions.</p>"
        )
    pvalues = _ordered_pvalues(result)
    names = [str(c) for c in pvalues.columns]
    rows = []
    for row_name, row in pvalues.iterrows():
        cells = [escape(str(row_name))]
        for col_name, value in row.items():
            if row_name == col_name:
                cells.append('<td class="diag">–</td>')
            elif value < alpha:
                cells.append(f'<td class="sig">{p_value(float(value))}</td>')
            else:
                cells.append(p_value(float(value)))
        rows.append(cells)
    out.append(
        f'<h3>Adjusted p-values</h3><p class="desc">p_adjust = '
        f"{escape(str(test.get('p_adjust')))}, α = {alpha:g}, over "
        f"{test.get('n_questions')} questions ({test.get('n_ranks')} question-level ranks); "
        "highlighted "
        "cells are below α.</p>"
    )
    out.append(table(["", *(escape(n) for n in names)], rows))
    means = {n: e.get("mean_rank") for n, e in summary["candidates"].items()}
    sig = sorted(  # the verdict's order: best-placed winner first
        (_better_first(p) for p in summary.get("pairs") or [] if p["significant"]),
        key=lambda p: (means[p["a"]], means[p["b"]], p["a"], p["b"]),
    )
    if sig:
        out.append(
            '<h3>Significant pairs</h3><p class="desc">With effect sizes, so a p-value never '
            "stands alone; A is the better of the two (lower mean rank). Mean rank A − B is "
            "negative: A is that many rank places ahead. Win rate: share of the n questions that "
            "ranked both where A ranked above B (question-level rankings), ties counting ½.</p>"
        )
        out.append(
            table(
                [
                    "A (better)",
                    "B",
                    "adjusted p",
                    "mean rank A − B",
                    "win rate A over B",
                    "n questions",
                ],
                [
                    [
                        escape(str(p["a"])),
                        escape(str(p["b"])),
                        p_value(p["p_adjusted"]),
                        number(p["mean_rank_diff"]),
                        number(p["win_rate_a"]),
                        str(p["n_pairs"]),
                    ]
                    for p in sig
                ],
                name_columns=2,
            )
        )
    else:
        out.append(f"<p>No pair differs significantly at α = {alpha:g}.</p>")
    if summary.get("power_hint"):
        out.append(f'<p class="caution">{escape(summary["power_hint"])}</p>')
    out.append(_dunn(summary))
    out.append(_per_judge(summary))
    return "\n".join(out)


def _dunn(summary: dict[str, Any]) -> str:
    dunn = summary.get("dunn")
    if not dunn or dunn["is_verdict"]:
        return ""
    rows = [
        [escape(str(p["a"])), escape(str(p["b"])), p_value(p["p_adjusted"]),
         "yes" if p["significant"] else "no"]
        for p in dunn["pairs"]
    ]  # fmt: skip
    return (
        "<h3>Dunn–Holm (the original RAQ method)</h3>"
        f'<p class="desc">{escape(dunn["description"])} {escape(dunn["caveat"])} Shown for '
        "comparison with the article; the verdict uses the calibrated test.</p>"
        + table(["A", "B", "adjusted p", "below α"], rows, name_columns=2)
    )


def _better_first(pair: dict[str, Any]) -> dict[str, Any]:
    """Orient a pair (stored a < b by name) so A is the one with the better mean rank."""
    diff = pair.get("mean_rank_diff")
    if diff is None or not diff > 0:
        return pair
    win = pair.get("win_rate_a")
    return pair | {
        "a": pair["b"],
        "b": pair["a"],
        "mean_rank_diff": -diff,
        "win_rate_a": None if win is None or not math.isfinite(win) else 1 - win,
    }


def _per_judge(summary: dict[str, Any]) -> str:
    """A panel's per-judge means, and where a judge alone disagrees with the pooled test."""
    per_judge = summary.get("per_judge") or {}
    if not per_judge:
        return ""
    names = list(summary["candidates"])
    pooled = {frozenset(pair[:2]) for pair in summary.get("significant_pairs") or []}
    n_pairs = len(summary.get("pairs") or [])
    rows = []
    for judge, entry in per_judge.items():
        if "error" in entry:
            rows.append(
                [escape(str(judge)), *("–" for _ in names), f"not tested: {escape(entry['error'])}"]
            )
            continue
        cells = [
            f"{number(entry['mean_rank'].get(n))} (n = {entry['n_ranks'].get(n, 0)})" for n in names
        ]
        own = {frozenset(pair[:2]): pair for pair in entry["significant_pairs"]}
        notes = [f"{len(own)} of {n_pairs} pairs significant"]
        notes += [
            f"only this judge: {escape(str(a))} vs {escape(str(b))} ({p_is(p)})"
            for key, (a, b, p) in own.items()
            if key not in pooled
        ]
        notes += [
            "not this judge: " + " vs ".join(escape(str(n)) for n in sorted(key))
            for key in pooled
            if key not in own
        ]
        rows.append([escape(str(judge)), *cells, f'<td class="name">{"<br>".join(notes)}</td>'])
    return (
        '<h3>The same test per judge</h3><p class="desc">Each judge\'s ranks alone, mean rank '
        "per candidate (n ranks): a difference only one judge sees is a judge preference, not "
        "a quality gap.</p>"
        + table(["judge", *(escape(str(n)) for n in names), "significant pairs"], rows)
    )
