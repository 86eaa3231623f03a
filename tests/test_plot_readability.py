"""Plots a reader can read: tick labels and candidate names never print over each other, and a
difference of a hair is not drawn as the width of the panel."""

from __future__ import annotations

import itertools
from types import SimpleNamespace
from typing import Any

import pytest

pytest.importorskip("matplotlib")

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.transforms import Bbox

from raq.report.plots.quality import draw_tradeoff
from raq.report.plots.style import plot_labels


def tradeoff_run(speeds: dict[str, float], ranks: dict[str, float], cost: dict[str, float]) -> Any:
    """What draw_tradeoff reads: a summary with each candidate's rank, CI, speed and cost."""
    candidates = {
        name: {
            "mean_rank": ranks[name],
            "mean_rank_ci95": [ranks[name] - 0.01, ranks[name] + 0.01],
            "words_per_second": speed,
            "cost_usd": {"per_answer": cost[name]} if cost else None,
        }
        for name, speed in speeds.items()
    }
    summary = {"name": "readable", "candidates": candidates, "n_questions_ranked": 2500}
    return SimpleNamespace(summary_json=summary)


def drawn(run: Any) -> Figure:
    figure = draw_tradeoff(run, plot_labels(list(run.summary_json["candidates"])))
    assert isinstance(figure, Figure)
    figure.canvas.draw()
    return figure


def x_tick_boxes(figure: Figure, ax: Axes) -> list[Bbox]:
    renderer = figure.canvas.get_renderer()  # type: ignore[attr-defined]
    low, high = sorted(ax.get_xlim())
    return [
        tick.label1.get_window_extent(renderer)
        for tick in ax.xaxis.get_major_ticks()
        if tick.label1.get_visible() and tick.label1.get_text() and low <= tick.get_loc() <= high
    ]


def name_boxes(figure: Figure, ax: Axes) -> list[Bbox]:
    renderer = figure.canvas.get_renderer()  # type: ignore[attr-defined]
    return [text.get_window_extent(renderer) for text in ax.texts]


def overlapping(boxes: list[Bbox]) -> list[tuple[int, int]]:
    pairs = itertools.combinations(enumerate(boxes), 2)
    return [(i, j) for (i, a), (j, b) in pairs if a.overlaps(b)]


# Two candidates a hair apart: what the bench's two equal fakes gave, 359.75 and 359.92 words/s.
HAIR = tradeoff_run(
    {"cand-a": 359.92, "cand-b": 359.75},
    {"cand-a": 1.5, "cand-b": 1.5},
    {"cand-a": 0.000_412_3, "cand-b": 0.000_412_5},
)
APART = tradeoff_run(
    {"fast": 120.0, "medium": 60.0, "slow": 20.0},
    {"fast": 2.4, "medium": 1.9, "slow": 1.7},
    {"fast": 0.0004, "medium": 0.002, "slow": 0.01},
)


@pytest.mark.parametrize("run", [HAIR, APART], ids=["a hair apart", "far apart"])
def test_tradeoff_tick_labels_and_names_never_print_over_each_other(run: Any) -> None:
    figure = drawn(run)
    panels = figure.axes
    assert len(panels) == 2  # speed, and cost where prices are set
    for ax in panels:
        ticks = x_tick_boxes(figure, ax)
        assert len(ticks) >= 3, ax.get_xlabel()
        assert overlapping(ticks) == [], f"{ax.get_xlabel()}: tick labels overlap"
        names = name_boxes(figure, ax)
        assert len(names) == len(run.summary_json["candidates"])
        assert overlapping(names) == [], f"{ax.get_xlabel()}: candidate names overlap"


def test_a_hair_of_difference_is_not_drawn_as_the_width_of_the_panel() -> None:
    speed, cost = drawn(HAIR).axes
    low, high = speed.get_xlim()
    assert high - low >= 0.1 * 359.8  # the speeds differ by 0.05 %: shown on a tenth at least
    assert low <= 359.75 and high >= 359.92
    low, high = cost.get_xlim()
    assert high - low >= 0.1 * 0.4124


def test_differences_wider_than_a_tenth_keep_their_own_range() -> None:
    speed, _ = drawn(APART).axes
    low, high = speed.get_xlim()
    assert low < 20.0 and high > 120.0
    assert high - low < 2 * (120.0 - 20.0)  # matplotlib's own margins, not widened
