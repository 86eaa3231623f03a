"""position_bias.png: each judge's mean rank by the position an answer was shown in."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from raq.report.plots.style import drawable_text, laid_out, subplots

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from raq.result import RunResult


def draw_position_bias(result: RunResult, labels: dict[str, str]) -> Figure | str:
    """Mean rank by presented position per judge: flat lines mean the judge reads content."""

    bias = result.summary_json.get("diagnostics", {}).get("position_bias")
    if not bias or not bias["n"]:
        return "no ranks with a presented position"
    judges = {j: d for j, d in bias["judges"].items() if len(d["mean_rank_by_position"]) >= 2}
    if not judges:
        return "every judge saw a single position only"
    k = int(max(p for d in bias["judges"].values() for p in d["mean_rank_by_position"]))
    fig, ax = subplots(figsize=(max(5.5, 1.5 + 0.5 * k), 4.2))
    for judge, data in judges.items():
        positions = sorted(data["mean_rank_by_position"])
        p = data["p_value"]
        flag = ", flagged" if data["flagged"] else ""
        p_text = f"p = {p:.3g}" if math.isfinite(p) else "p = –"
        ax.plot(
            positions,
            [data["mean_rank_by_position"][q] for q in positions],
            marker="o",
            label=(
                f"{drawable_text(judge)} (Friedman by position {p_text}{flag}; "
                f"n = {data.get('n_questions', 0)} questions)"
            ),
        )
    expected = (k + 1) / 2
    ax.axhline(
        expected,
        color="0.35",
        linestyle="--",
        linewidth=1.2,
        label=f"no position effect: (k+1)/2 = {expected:g}",
    )
    ax.set_xticks(range(1, k + 1))
    ax.set_xlabel("presented position (1 = shown first)")
    ax.set_ylabel("mean rank (1 = best)")
    ax.set_ylim(0.8, k + 0.2)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), frameon=False)
    ax.set_title(
        "Judge position bias: mean rank by presented position\n"
        f"per judge, over {bias['n']} ranks with a position; α = {bias['alpha']:g}"
    )
    return laid_out(fig)
