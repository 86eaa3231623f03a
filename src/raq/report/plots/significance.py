"""significance.png (the adjusted p-value of every pair) and critical_difference.png (mean
ranks on one axis, bars joining candidates the test cannot tell apart)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from raq.report.plots.style import (
    ANNOTATE_MATRIX_UP_TO,
    candidate_colors,
    laid_out,
    rotate_ticks,
    subplots,
)

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

    from raq.result import RunResult


def _ordered_pvalues(result: RunResult) -> pd.DataFrame | str:
    """The p-value matrix in the report's candidate order (best first), or why there is none."""
    pvalues = result.pvalues
    if result.stats is None or pvalues.empty:
        error = result.summary_json.get("test", {}).get("error")
        return error or "no statistical test was run"
    if len(pvalues.index) < 2:
        return "fewer than two candidates have ranks"
    order = [n for n in result.summary_json["candidates"] if n in pvalues.index]
    order += [n for n in pvalues.index if n not in order]
    return pvalues.reindex(index=order, columns=order).astype(float)


def _test_text(result: RunResult) -> str:
    test = result.summary_json["test"]
    name = {"dunn": "Dunn", "friedman": "Friedman"}.get(test.get("name"), str(test.get("name")))
    if test.get("posthoc"):
        name += f" + {test['posthoc'].capitalize()}"
    adjust = test.get("p_adjust") or "none"
    return f"{name}, p_adjust = {adjust}, n = {test.get('n_ranks')} ranks"


def draw_significance(result: RunResult, labels: dict[str, str]) -> Figure | str:
    """Heatmap of the adjusted p-values, binned the way scikit-posthocs' sign_plot does."""
    import numpy as np
    import scikit_posthocs as sp

    pvalues = _ordered_pvalues(result)
    if isinstance(pvalues, str):
        return pvalues
    k = len(pvalues)
    names = list(pvalues.index)
    if not any(math.isfinite(pvalues.at[a, b]) for a in names for b in names if a != b):
        return (
            "no pair has a p-value: the test's statistic is undefined, as when every question "
            "ranked the candidates equal"
        )
    shown = pvalues.rename(index=labels, columns=labels)
    longest = max(len(labels[n]) for n in names)
    cells = 0.7 * k + 0.5  # inches for the matrix itself; labels and colour bar come on top
    fig, ax = subplots(figsize=(cells + 0.075 * longest + 2.4, cells + 0.06 * longest + 1.3))
    kwargs: dict[str, Any] = {"linewidths": 0.8, "linecolor": "white", "square": True}
    if k <= ANNOTATE_MATRIX_UP_TO:
        texts = np.array(
            [[_p_cell(pvalues.at[a, b]) if a != b else "" for b in names] for a in names]
        )
        kwargs |= {"annot": texts, "fmt": "", "annot_kws": {"fontsize": 8}}
    _, cbar = sp.sign_plot(shown, ax=ax, **kwargs)
    ax.set_xlabel("")
    ax.set_ylabel("")
    tick_labels = [labels[n] for n in names]
    ax.set_yticks([i + 0.5 for i in range(k)], tick_labels, rotation=0)
    ax.set_xticks([i + 0.5 for i in range(k)], tick_labels)
    rotate_ticks(ax, tick_labels)
    alpha = result.summary_json["test"].get("alpha", 0.05)
    note = "" if alpha == 0.05 else f"; the run's α = {alpha:g}"
    ax.set_title(
        "Which candidates differ: adjusted p-value per pair\n"
        f"{_test_text(result)}; colour bins at 0.05/0.01/0.001{note}"
    )
    laid_out(fig, rect=(0, 0, 0.86, 1))
    ax.apply_aspect()  # the square heatmap's final box (what a draw would settle first)
    box = ax.get_position()
    cbar.ax.set_position((box.x1 + 0.03, box.y0 + box.height * 0.3, 0.03, box.height * 0.4))
    return fig


def _p_cell(p: float) -> str:
    if not math.isfinite(p):
        return "–"
    return "<0.001" if p < 0.001 else f"{p:.3f}" if p < 0.995 else "1"


def draw_critical_difference(result: RunResult, labels: dict[str, str]) -> Figure | str:
    """Mean ranks on one axis; a bar joins candidates the test cannot tell apart."""
    import pandas as pd
    import scikit_posthocs as sp
    from matplotlib.colors import to_rgb

    pvalues = _ordered_pvalues(result)
    if isinstance(pvalues, str):
        return pvalues
    assert result.stats is not None
    means = pd.Series(
        {labels[n]: result.stats.candidates[n].mean_rank for n in pvalues.index},
        dtype=float,
    )
    if not means.map(math.isfinite).all():
        return "a candidate's mean rank is undefined"
    k = len(means)
    colors = candidate_colors(list(result.summary_json["candidates"]))
    alpha = result.summary_json["test"].get("alpha", 0.05)
    fig, ax = subplots(figsize=(8.5, 1.6 + 0.34 * ((k + 1) // 2 + 2)))
    try:
        artists = sp.critical_difference_diagram(
            ranks=means,
            sig_matrix=pvalues.rename(index=labels, columns=labels),
            alpha=alpha,
            ax=ax,
            label_fmt_left="{label} ({rank:.2f})",
            label_fmt_right="({rank:.2f}) {label}",
            label_props={"fontsize": 9},
            text_h_margin=0.02 * max(1.0, float(means.max() - means.min())),
            color_palette={labels[n]: c for n, c in colors.items() if n in pvalues.index},
        )
    except Exception as exc:  # degenerate input scikit-posthocs refuses
        return f"scikit-posthocs could not draw it: {type(exc).__name__}: {exc}"
    for text in artists["labels"]:  # pale palette colours are hard to read as text
        text.set_color(tuple(0.55 * c for c in to_rgb(text.get_color())))
    low, high = float(means.min()), float(means.max())
    pad = max(0.05, 0.05 * (high - low))
    ax.set_xlim(low - pad, high + pad)
    ax.set_title(
        "Critical difference diagram: mean rank, rank 1 = best (left)\n"
        f"a bar joins candidates that do not differ at α = {alpha:g} ({_test_text(result)})",
        pad=22,
    )
    return laid_out(fig)
