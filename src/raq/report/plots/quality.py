"""bars.png, the article's figure (mean rank, words per second, answer length), and
tradeoff.png (quality against speed and cost)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from raq.report.plots.style import (
    STACK_BARS_ABOVE,
    candidate_colors,
    drawable_text,
    laid_out,
    n_text,
    rotate_ticks,
    short_number,
    subplots,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from raq.result import RunResult


def draw_bars(result: RunResult, labels: dict[str, str]) -> Figure | str:
    """Mean rank with its CI, words per second and answer length, one bar per candidate."""

    candidates = result.summary_json["candidates"]
    names = list(candidates)
    panels = [
        key
        for key in ("mean_rank", "words_per_second", "answer_words")
        if any(candidates[n].get(key) is not None for n in names)
    ]
    if not panels:
        return "no candidate has ranks, speeds or answer lengths to show"
    k = len(names)
    colors = candidate_colors(names)
    stacked = k > STACK_BARS_ABOVE  # many bars: one wide panel per metric, stacked
    if stacked:
        fig, grid = subplots(
            len(panels), 1, figsize=(max(8.0, 1.5 + 0.55 * k), 3.4 * len(panels)), sharex=True
        )
    else:
        fig, grid = subplots(1, len(panels), figsize=(max(4.8, 1.4 + 0.45 * k) * len(panels), 4.8))
    axes = [grid] if len(panels) == 1 else list(grid)
    x = list(range(k))
    tick_labels = [labels[n] for n in names]
    for ax, key in zip(axes, panels, strict=True):
        values = [candidates[n].get(key) for n in names]
        heights = [v if v is not None else 0.0 for v in values]
        ax.bar(x, heights, color=[colors[n] for n in names], width=0.7, zorder=2)
        ax.grid(axis="y", alpha=0.3, zorder=0)
        ax.set_xticks(x, tick_labels)
        if not stacked or ax is axes[-1]:
            ax.tick_params(axis="x", labelbottom=True)
            rotate_ticks(ax, tick_labels)
        sep = " " if stacked else "\n"
        if key == "mean_rank":
            _rank_panel(ax, result, names, values, sep)
            continue
        # Successful answers with the measurement: the n of its mean.
        counts = [candidates[n]["distributions"][key]["n"] for n in names]
        if key == "words_per_second":
            ax.set_title(
                f"Words per second{sep}(answer words ÷ request latency)\n"
                f"mean over successful answers,{sep}{n_text(counts, 'answers')}"
            )
            ax.set_ylabel("words / s (higher is faster)")
        else:
            ax.set_title(
                f"Answer length in words{sep}(a CJK character counts 1)\n"
                f"mean over successful answers,{sep}{n_text(counts, 'answers')}"
            )
            ax.set_ylabel("words")
        top = max(heights) if heights else 0
        ax.set_ylim(0, top * 1.15 if top > 0 else 1)
        for xi, v in zip(x, values, strict=True):
            ax.annotate(
                short_number(v) if v is not None else "no answers",
                (xi, v or 0),
                xytext=(0, 2),
                textcoords="offset points",
                ha="center",
                va="bottom",
                fontsize=8,
            )
    fig.suptitle(
        f"{drawable_text(result.summary_json['name'])}: candidates compared", fontsize=11.5
    )
    return laid_out(fig)


def draw_tradeoff(result: RunResult, labels: dict[str, str]) -> Figure | str:
    """Quality against speed and against cost: mean rank with its 95% CI (lower is better) over
    words per second, and over the estimated cost of 1,000 questions where prices are set."""
    candidates = result.summary_json["candidates"]
    names = [n for n in candidates if candidates[n].get("mean_rank") is not None]
    if not names:
        return "no candidate has a mean rank to place"
    priced = [n for n in names if (candidates[n].get("cost_usd") or {}).get("per_answer")]
    panels = [("words_per_second", "words per second (answer words ÷ latency)")]
    if priced:
        panels.append(("cost", "estimated cost of 1,000 questions, USD"))
    fig, grid = subplots(1, len(panels), figsize=(5.6 * len(panels), 4.6), squeeze=False)
    colors = candidate_colors(names)
    for ax, (key, xlabel) in zip(grid[0], panels, strict=True):
        points: list[tuple[float, float, str]] = []
        for name in names:
            entry = candidates[name]
            x = (
                entry.get("words_per_second")
                if key == "words_per_second"
                else (entry.get("cost_usd") or {}).get("per_answer")
            )
            if x is None:
                continue
            x = x * 1000 if key == "cost" else x
            y = entry["mean_rank"]
            low, high = entry.get("mean_rank_ci95") or [y, y]
            ax.errorbar(
                x, y, yerr=[[y - low], [high - y]], fmt="o", color=colors[name], capsize=4,
                label=labels[name],
            )  # fmt: skip
            points.append((x, y, labels[name]))
        _at_least_a_tenth_wide(ax, [x for x, _, _ in points])
        _name_points(ax, points)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("mean rank (1 = best), 95% CI")
        ax.invert_yaxis()  # better quality up
        ax.grid(alpha=0.3)
        best = "right" if key == "words_per_second" else "left"
        ax.set_title(f"Quality vs {'speed' if key != 'cost' else 'cost'}: best is up and {best}")
    n = result.summary_json.get("n_questions_ranked")
    fig.suptitle(f"{drawable_text(result.summary_json['name'])}: the trade-off, over {n} questions")
    return laid_out(fig)


def _at_least_a_tenth_wide(ax: Axes, values: list[float]) -> None:
    """Candidates a hair apart in speed or cost (359.75 and 359.92 words/s) would otherwise
    span the whole panel: a 0.05 % difference drawn as the width of the plot, under tick labels
    of six digits that run into each other. The axis shows at least a tenth of their value."""
    if not values:
        return
    low, high = min(values), max(values)
    middle = (low + high) / 2
    span = abs(middle) / 10
    if middle and high - low < span:
        ax.set_xlim(middle - span * 0.6, middle + span * 0.6)


def _name_points(ax: Axes, points: list[tuple[float, float, str]]) -> None:
    """Each point's candidate beside it. Names of points that (nearly) coincide, such as two
    candidates as good and as fast, are stacked a line apart instead of printed over each
    other. Call once the axis limits are set: nearness is a share of the panel."""
    if not points:
        return
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    near_x, near_y = abs(x1 - x0) * 0.15, abs(y1 - y0) * 0.04
    named: list[tuple[float, float]] = []
    for x, y, label in points:
        lines_down = sum(abs(x - nx) < near_x and abs(y - ny) < near_y for nx, ny in named)
        ax.annotate(
            label, (x, y), xytext=(6, 4 - 10 * lines_down), textcoords="offset points",
            fontsize=8,
        )  # fmt: skip
        named.append((x, y))


def _rank_panel(ax: Axes, result: RunResult, names: list[str], means: list[Any], sep: str) -> None:
    candidates = result.summary_json["candidates"]
    k = len(names)
    lows, highs, tops = [], [], []
    for name, mean in zip(names, means, strict=True):
        ci = candidates[name].get("mean_rank_ci95") or [None, None]
        if mean is None or ci[0] is None or ci[1] is None:
            lows.append(0.0)
            highs.append(0.0)
            tops.append(mean or 0.0)
            continue
        lows.append(max(0.0, mean - ci[0]))
        highs.append(max(0.0, ci[1] - mean))
        tops.append(max(mean, ci[1]))
    ax.errorbar(
        range(k), [m or 0 for m in means], yerr=[lows, highs], fmt="none", ecolor="black",
        elinewidth=1.2, capsize=4, zorder=3,
    )  # fmt: skip
    ranked = [candidates[n].get("n_ranks") or 0 for n in names if candidates[n].get("mean_rank")]
    n_questions = result.summary_json.get("n_questions_ranked")
    ax.set_title(
        f"Mean rank (rank 1 = best){sep}with 95% bootstrap CI\n"
        f"over {n_questions} questions,{sep}{n_text(ranked, 'ranks')}"
    )
    ax.set_ylabel("mean rank (lower is better)")
    expected = (k + 1) / 2
    ax.axhline(
        expected, color="0.4", linestyle="--", linewidth=1, zorder=1,
        label=f"random judge: (k+1)/2 = {expected:g}",
    )  # fmt: skip
    # best first, so the top left is empty: the legend goes there
    ax.legend(loc="upper left", fontsize=7.5, frameon=False)
    ax.set_ylim(0, max([k, *tops]) * 1.18)
    for xi, (mean, top) in enumerate(zip(means, tops, strict=True)):
        ax.annotate(
            short_number(mean) if mean is not None else "no ranks",
            (xi, top),
            xytext=(0, 3),
            textcoords="offset points",
            ha="center",
            va="bottom",
            fontsize=8,
        )
