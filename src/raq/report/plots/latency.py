"""latency.png: request latency and time to first token per candidate, as box plots."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from raq.report.plots.style import (
    STACK_BARS_ABOVE,
    candidate_colors,
    laid_out,
    n_text,
    rotate_ticks,
    subplots,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from raq.result import RunResult


def draw_latency(result: RunResult, labels: dict[str, str]) -> Figure | str:
    """Box plots of request latency and time to first token per candidate."""

    boxes = result.speed_boxes
    names = [n for n in result.summary_json["candidates"] if boxes.get(n)]
    if not names:
        return "no successful answers with timings"
    panels = [
        (column, title)
        for column, title in (
            ("latency_s", "Request latency, s (start → last byte)"),
            ("ttft_s", "Time to first token, s (streamed answers)"),
        )
        if any(column in boxes[n] for n in names)
    ]
    colors = candidate_colors(list(result.summary_json["candidates"]))
    stacked = len(names) > STACK_BARS_ABOVE
    if stacked:
        fig, grid = subplots(
            len(panels), 1, figsize=(max(8.0, 1.5 + 0.55 * len(names)), 3.2 * len(panels)),
            sharex=True,
        )  # fmt: skip
    else:
        width = max(4.2, 1.3 + 0.45 * len(names))
        fig, grid = subplots(1, len(panels), figsize=(width * len(panels), 4.4))
    axes = [grid] if len(panels) == 1 else list(grid)
    tick_labels = [labels[n] for n in names]
    for ax, (column, title) in zip(axes, panels, strict=True):
        # Drawn from statistics taken per candidate while the answers streamed (what
        # Axes.boxplot would compute from every value); empty where a candidate has none.
        stats = [{**boxes[n][column], "label": labels[n]} if column in boxes[n] else
                 _empty_box(labels[n]) for n in names]  # fmt: skip
        drawn = ax.bxp(
            stats,
            patch_artist=True,
            widths=0.6,
            medianprops={"color": "black"},
            flierprops={"markersize": 3, "alpha": 0.6},
        )
        for patch, name in zip(drawn["boxes"], names, strict=True):
            patch.set_facecolor(colors[name])
            patch.set_alpha(0.75)
        ax.grid(axis="y", alpha=0.3)
        ax.set_ylim(bottom=0)
        ax.set_ylabel("seconds")
        counts = [result.summary_json["candidates"][n]["distributions"][column]["n"] for n in names]
        sep = " " if stacked else "\n"  # side by side, a long title would run into the next
        ax.set_title(f"{title}\nper successful answer,{sep}{n_text(counts, 'answers')}")
        if not stacked or ax is axes[-1]:
            ax.tick_params(axis="x", labelbottom=True)
            rotate_ticks(ax, tick_labels)
    return laid_out(fig)


def _empty_box(label: str) -> dict[str, Any]:
    """An empty box, as Axes.boxplot draws for a candidate without values."""
    import numpy as np
    from matplotlib.cbook import boxplot_stats

    return {**boxplot_stats(np.array([]))[0], "label": label}
