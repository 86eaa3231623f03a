"""PNG figures of a run: the article's bar charts, which candidates differ, and judge checks.

matplotlib and scikit-posthocs are imported inside the functions, so importing this module
costs nothing and ``raq --help`` stays instant. Figures are drawn on their own Agg canvas and
never through pyplot, so the user's backend (a notebook's inline one) is left as it was and no
figure of raq's appears after a notebook cell. A plot the data cannot support is
skipped with a reason rather than drawn empty, and no plot can stop the report.
"""

from __future__ import annotations

import logging
import math
import os
import time
import warnings
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from raq.core.atomic import temporary_beside
from raq.report.plot_helper import HELPER_KEYS, PlotHelper, ready_line

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from raq.result import RunResult

log = logging.getLogger(__name__)

DPI = 110
PLOT_KEYS = (
    "bars", "tradeoff", "significance", "critical_difference", "latency", "position_bias",
)  # fmt: skip
MAX_LABEL_CHARS = 32
STACK_BARS_ABOVE = 6  # candidates; with more, the panels of a figure stack vertically
ANNOTATE_MATRIX_UP_TO = 12  # p-values printed in the heatmap cells up to this many candidates
# Fonts that cover CJK, tried in order as fallbacks after DejaVu Sans when installed.
CJK_FAMILIES = (
    "Noto Sans CJK SC",
    "Noto Sans CJK JP",
    "Noto Sans CJK TC",
    "Noto Sans CJK KR",
    "Noto Sans SC",
    "Noto Sans JP",
    "Source Han Sans SC",
    "Source Han Sans",
    "WenQuanYi Zen Hei",
    "WenQuanYi Micro Hei",
    "Droid Sans Fallback",
    "AR PL UMing CN",
    "Microsoft YaHei",
    "SimHei",
    "PingFang SC",
    "Hiragino Sans",
    "Malgun Gothic",
    "Arial Unicode MS",
)

Drawer = Callable[["RunResult", dict[str, str]], "Figure | str"]


def write_plots(
    result: RunResult,
    out_dir: Path,
    *,
    skipped: dict[str, str] | None = None,
    helper: PlotHelper | None = None,
) -> dict[str, Path]:
    """Write every plot the run supports as ``out_dir/<key>.png``; return {key: path}.

    Plots that cannot be drawn are left out; pass ``skipped`` to learn why (key → reason).
    A ready ``helper`` process draws its share meanwhile; the files are the same without it.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    theirs: list[str] = []
    if helper is not None and helper.ready() and helper.send(result, out_dir, list(HELPER_KEYS)):
        theirs = list(HELPER_KEYS)
    reasons: dict[str, str] = {}
    started = time.perf_counter()
    written = draw_some(result, out_dir, [k for k in PLOT_KEYS if k not in theirs], reasons)
    if theirs:
        assert helper is not None
        # Its share takes about as long as this one: a helper that needs much longer (starved
        # on a busy machine, or dead) is overtaken, and its plots are drawn here.
        answer = helper.receive(within_s=max(0.5, time.perf_counter() - started))
        if answer is None:
            written |= draw_some(result, out_dir, theirs, reasons)
        else:
            written |= answer[0]
            reasons |= answer[1]
            for key, reason in answer[1].items():
                if reason.startswith("drawing failed"):
                    log.warning("plot %s skipped: %s", key, reason)
    if skipped is not None:
        skipped.update((key, reasons[key]) for key in PLOT_KEYS if key in reasons)
    return {key: written[key] for key in PLOT_KEYS if key in written}


def draw_some(
    result: RunResult, out_dir: Path, keys: list[str], reasons: dict[str, str]
) -> dict[str, Path]:
    """Draw these plots (in PLOT_KEYS order) in raq's style; why any was not, into ``reasons``."""
    import matplotlib

    font_log = logging.getLogger("matplotlib.font_manager")
    font_level = font_log.level
    font_log.setLevel(logging.ERROR)  # CJK fallback fonts often lack a 'normal' weight: noise
    try:
        with matplotlib.rc_context(_style()):
            return _draw_all(result, out_dir, reasons, keys)
    finally:
        font_log.setLevel(font_level)


def serve_helper() -> None:
    """The plot helper process (raq.report.plot_helper): prepare, say so, draw one job,
    answer, exit."""
    import pickle
    import sys

    logging.disable(logging.CRITICAL)  # the run logs the plots that failed, from the reasons
    prepare_drawing()
    sys.stdout.buffer.write(ready_line())
    sys.stdout.buffer.flush()
    try:
        job: dict[str, Any] = pickle.load(sys.stdin.buffer)
    except EOFError:  # the run ended without plots (interrupted, or drew them itself)
        return
    reasons: dict[str, str] = {}
    written = draw_some(job["result"], Path(job["out_dir"]), job["keys"], reasons)
    pickle.dump(({k: str(p) for k, p in written.items()}, reasons), sys.stdout.buffer)
    sys.stdout.buffer.flush()
    # Its plots are in place and its answer is sent: exit without the interpreter's teardown
    # of matplotlib, numpy and their modules (about 0.1 s that the run waits for in close()).
    os._exit(0)


def prepare() -> None:
    """Import what every plot needs and read the fonts' glyph tables now (about half a
    second), so a run can do it in the background while its requests are in flight."""
    import scikit_posthocs  # noqa: F401

    prepare_drawing()


def prepare_drawing() -> None:
    """``prepare`` without the statistics' plots (scikit-posthocs, and pandas with it)."""
    import matplotlib.backends.backend_agg
    import matplotlib.figure  # noqa: F401

    plot_labels([])  # fills the font caches (_font_families, _drawable_codepoints)


def _draw_all(
    result: RunResult, out_dir: Path, reasons: dict[str, str], keys: list[str]
) -> dict[str, Path]:

    labels = plot_labels(list(result.summary_json["candidates"]))
    drawers: dict[str, Drawer] = {
        "bars": _bars,
        "tradeoff": _tradeoff,
        "significance": _significance,
        "critical_difference": _critical_difference,
        "latency": _latency,
        "position_bias": _position_bias,
    }
    written: dict[str, Path] = {}
    for key, draw in drawers.items():
        if key not in keys:
            continue
        try:
            drawn = draw(result, labels)
        except Exception as exc:  # one bad plot must not cost the run its report
            drawn = f"drawing failed: {type(exc).__name__}: {exc}"
            log.warning("plot %s skipped: %s", key, drawn)
        if isinstance(drawn, str):
            reasons[key] = drawn
            continue
        path = out_dir / f"{key}.png"
        tmp = temporary_beside(path)  # a run and a raq report may draw at once
        try:
            drawn.savefig(tmp, format="png", dpi=DPI, bbox_inches="tight", pad_inches=0.15)
            os.replace(tmp, path)
            written[key] = path
        finally:
            tmp.unlink(missing_ok=True)
    return written


def plot_labels(names: list[str]) -> dict[str, str]:
    """Axis label per candidate: the name, shortened, with ``#k`` when the fonts cannot draw it.

    ``k`` is the candidate's 1-based place in ``names`` (the report's table order), so a reader
    can match a label like ``#2 ??-large`` to its row. ``$`` is escaped against mathtext.
    """
    drawable = _drawable_codepoints()
    labels: dict[str, str] = {}
    for k, name in enumerate(names, start=1):
        text = _shorten(name)
        if any(ord(ch) not in drawable for ch in text if ch.isprintable() and not ch.isspace()):
            text = f"#{k} " + "".join(
                ch if ord(ch) in drawable or ch.isspace() else "?" for ch in text
            )
        labels[name] = text
    seen: dict[str, int] = {}
    for text in labels.values():  # shortening may collide; the place number separates
        seen[text] = seen.get(text, 0) + 1
    for k, (name, text) in enumerate(labels.items(), start=1):
        if seen[text] > 1 and not text.startswith("#"):
            labels[name] = f"#{k} {text}"
    return {name: text.replace("$", r"\$") for name, text in labels.items()}


def _shorten(name: str) -> str:
    """Keep both ends of a long name: model names differ at the start and at the version."""
    if len(name) <= MAX_LABEL_CHARS:
        return name
    head = (MAX_LABEL_CHARS - 1) // 2
    return name[:head] + "…" + name[-(MAX_LABEL_CHARS - 1 - head) :]


def _text(value: object) -> str:
    """A user string (run or judge name) safe to draw: no mathtext, no missing glyphs."""
    drawable = _drawable_codepoints()
    text = "".join(ch if ord(ch) in drawable or ch.isspace() else "?" for ch in str(value))
    return text.replace("$", r"\$")


@lru_cache(maxsize=1)
def _font_families() -> tuple[str, ...]:
    from matplotlib import font_manager

    installed = {f.name for f in font_manager.fontManager.ttflist}
    return ("DejaVu Sans", *(f for f in CJK_FAMILIES if f in installed))


@lru_cache(maxsize=1)
def _drawable_codepoints() -> frozenset[int]:
    """Every code point one of the configured fonts has a glyph for."""
    from matplotlib import font_manager, ft2font

    points: set[int] = set()
    for family in _font_families():
        try:
            path = font_manager.findfont(
                font_manager.FontProperties(family=family), fallback_to_default=False
            )
            points.update(ft2font.FT2Font(path).get_charmap())
        except (ValueError, RuntimeError, OSError):
            continue
    return frozenset(points)


def _style() -> dict[str, Any]:
    return {
        "font.family": list(_font_families()),
        "font.size": 9.5,
        "axes.titlesize": 10.5,
        "axes.labelsize": 9.5,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "figure.facecolor": "white",
        "savefig.facecolor": "white",
    }


def _subplots(*grid: int, figsize: tuple[float, float], **options: Any) -> tuple[Figure, Any]:
    """``pyplot.subplots`` without pyplot: a figure on its own Agg canvas, which the user's
    backend never sees."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig, fig.subplots(*grid, **options)


def _laid_out(fig: Figure, rect: tuple[float, float, float, float] | None = None) -> Figure:
    """Tight layout; axes added outside the grid (sign_plot's colour bar) only draw a warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        fig.tight_layout(rect=rect)
    return fig


def _colors(names: list[str]) -> dict[str, Any]:
    """One colour per candidate, the same in every plot."""
    from matplotlib import colormaps

    cmap = colormaps["tab10" if len(names) <= 10 else "tab20"]
    return {name: cmap(i % cmap.N) for i, name in enumerate(names)}


def _rotate_ticks(ax: Axes, labels: list[str]) -> None:
    """Rotate candidate labels once they would collide; long or many names lean further."""
    longest = max((len(t) for t in labels), default=0)
    if (len(labels) <= 4 and longest <= 12) or (len(labels) <= 2 and longest <= 20):
        return
    angle = 35 if longest <= 18 else 50
    for tick in ax.get_xticklabels():
        tick.set_rotation(angle)
        tick.set_horizontalalignment("right")
        tick.set_rotation_mode("anchor")


def _n_text(counts: list[int], unit: str) -> str:
    """'n = 24 ranks each' or 'n = 20–24 ranks per candidate'."""
    if not counts:
        return f"n = 0 {unit}"
    low, high = min(counts), max(counts)
    if low == high:
        return f"n = {low} {unit} each"
    return f"n = {low}–{high} {unit} per candidate"


# ---------------------------------------------------------------------------------------------
# bars.png: the article's figure


def _bars(result: RunResult, labels: dict[str, str]) -> Figure | str:
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
    colors = _colors(names)
    stacked = k > STACK_BARS_ABOVE  # many bars: one wide panel per metric, stacked
    if stacked:
        fig, grid = _subplots(
            len(panels), 1, figsize=(max(8.0, 1.5 + 0.55 * k), 3.4 * len(panels)), sharex=True
        )
    else:
        fig, grid = _subplots(1, len(panels), figsize=(max(4.8, 1.4 + 0.45 * k) * len(panels), 4.8))
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
            _rotate_ticks(ax, tick_labels)
        sep = " " if stacked else "\n"
        if key == "mean_rank":
            _rank_panel(ax, result, names, values, sep)
            continue
        # Successful answers with the measurement: the n of its mean.
        counts = [candidates[n]["distributions"][key]["n"] for n in names]
        if key == "words_per_second":
            ax.set_title(
                f"Words per second{sep}(answer words ÷ request latency)\n"
                f"mean over successful answers,{sep}{_n_text(counts, 'answers')}"
            )
            ax.set_ylabel("words / s (higher is faster)")
        else:
            ax.set_title(
                f"Answer length in words{sep}(a CJK character counts 1)\n"
                f"mean over successful answers,{sep}{_n_text(counts, 'answers')}"
            )
            ax.set_ylabel("words")
        top = max(heights) if heights else 0
        ax.set_ylim(0, top * 1.15 if top > 0 else 1)
        for xi, v in zip(x, values, strict=True):
            ax.annotate(
                _num(v) if v is not None else "no answers",
                (xi, v or 0),
                xytext=(0, 2),
                textcoords="offset points",
                ha="center",
                va="bottom",
                fontsize=8,
            )
    fig.suptitle(f"{_text(result.summary_json['name'])}: candidates compared", fontsize=11.5)
    return _laid_out(fig)


def _tradeoff(result: RunResult, labels: dict[str, str]) -> Figure | str:
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
    fig, grid = _subplots(1, len(panels), figsize=(5.6 * len(panels), 4.6), squeeze=False)
    colors = _colors(names)
    for ax, (key, xlabel) in zip(grid[0], panels, strict=True):
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
            ax.annotate(labels[name], (x, y), xytext=(6, 4), textcoords="offset points", fontsize=8)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("mean rank (1 = best), 95% CI")
        ax.invert_yaxis()  # better quality up
        ax.grid(alpha=0.3)
        best = "right" if key == "words_per_second" else "left"
        ax.set_title(f"Quality vs {'speed' if key != 'cost' else 'cost'}: best is up and {best}")
    n = result.summary_json.get("n_questions_ranked")
    fig.suptitle(f"{_text(result.summary_json['name'])}: the trade-off, over {n} questions")
    return _laid_out(fig)


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
        f"over {n_questions} questions,{sep}{_n_text(ranked, 'ranks')}"
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
            _num(mean) if mean is not None else "no ranks",
            (xi, top),
            xytext=(0, 3),
            textcoords="offset points",
            ha="center",
            va="bottom",
            fontsize=8,
        )


def _num(value: float | None) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if abs(value) >= 100:
        return f"{value:.0f}"
    return f"{value:.2f}" if abs(value) < 10 else f"{value:.1f}"


# ---------------------------------------------------------------------------------------------
# significance.png and critical_difference.png


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


def _significance(result: RunResult, labels: dict[str, str]) -> Figure | str:
    """Heatmap of the adjusted p-values, binned the way scikit-posthocs' sign_plot does."""
    import numpy as np
    import scikit_posthocs as sp

    pvalues = _ordered_pvalues(result)
    if isinstance(pvalues, str):
        return pvalues
    k = len(pvalues)
    names = list(pvalues.index)
    shown = pvalues.rename(index=labels, columns=labels)
    longest = max(len(labels[n]) for n in names)
    cells = 0.7 * k + 0.5  # inches for the matrix itself; labels and colour bar come on top
    fig, ax = _subplots(figsize=(cells + 0.075 * longest + 2.4, cells + 0.06 * longest + 1.3))
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
    _rotate_ticks(ax, tick_labels)
    alpha = result.summary_json["test"].get("alpha", 0.05)
    note = "" if alpha == 0.05 else f"; the run's α = {alpha:g}"
    ax.set_title(
        "Which candidates differ: adjusted p-value per pair\n"
        f"{_test_text(result)}; colour bins at 0.05/0.01/0.001{note}"
    )
    _laid_out(fig, rect=(0, 0, 0.86, 1))
    fig.canvas.draw()  # the square heatmap's final box is known only after a draw
    box = ax.get_position()
    cbar.ax.set_position((box.x1 + 0.03, box.y0 + box.height * 0.3, 0.03, box.height * 0.4))
    return fig


def _p_cell(p: float) -> str:
    if not math.isfinite(p):
        return "–"
    return "<0.001" if p < 0.001 else f"{p:.3f}" if p < 0.995 else "1"


def _critical_difference(result: RunResult, labels: dict[str, str]) -> Figure | str:
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
    colors = _colors(list(result.summary_json["candidates"]))
    alpha = result.summary_json["test"].get("alpha", 0.05)
    fig, ax = _subplots(figsize=(8.5, 1.6 + 0.34 * ((k + 1) // 2 + 2)))
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
    return _laid_out(fig)


# ---------------------------------------------------------------------------------------------
# latency.png


def _latency(result: RunResult, labels: dict[str, str]) -> Figure | str:
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
    colors = _colors(list(result.summary_json["candidates"]))
    stacked = len(names) > STACK_BARS_ABOVE
    if stacked:
        fig, grid = _subplots(
            len(panels), 1, figsize=(max(8.0, 1.5 + 0.55 * len(names)), 3.2 * len(panels)),
            sharex=True,
        )  # fmt: skip
    else:
        width = max(4.2, 1.3 + 0.45 * len(names))
        fig, grid = _subplots(1, len(panels), figsize=(width * len(panels), 4.4))
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
        ax.set_title(f"{title}\nper successful answer,{sep}{_n_text(counts, 'answers')}")
        if not stacked or ax is axes[-1]:
            ax.tick_params(axis="x", labelbottom=True)
            _rotate_ticks(ax, tick_labels)
    return _laid_out(fig)


def _empty_box(label: str) -> dict[str, Any]:
    """An empty box, as Axes.boxplot draws for a candidate without values."""
    import numpy as np
    from matplotlib.cbook import boxplot_stats

    return {**boxplot_stats(np.array([]))[0], "label": label}


# ---------------------------------------------------------------------------------------------
# position_bias.png


def _position_bias(result: RunResult, labels: dict[str, str]) -> Figure | str:
    """Mean rank by presented position per judge: flat lines mean the judge reads content."""

    bias = result.summary_json.get("diagnostics", {}).get("position_bias")
    if not bias or not bias["n"]:
        return "no ranks with a presented position"
    judges = {j: d for j, d in bias["judges"].items() if len(d["mean_rank_by_position"]) >= 2}
    if not judges:
        return "every judge saw a single position only"
    k = int(max(p for d in bias["judges"].values() for p in d["mean_rank_by_position"]))
    fig, ax = _subplots(figsize=(max(5.5, 1.5 + 0.5 * k), 4.2))
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
                f"{_text(judge)} (Friedman by position {p_text}{flag}; "
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
    return _laid_out(fig)
