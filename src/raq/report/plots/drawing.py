"""Writing a run's plots: which plots there are, each drawn by its module in raq's style and
saved atomically, and the share a helper process draws (raq.report.plot_helper)."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from raq.core.atomic import temporary_beside
from raq.report.plot_helper import HELPER_KEYS, PlotHelper, ready_line
from raq.report.plots.latency import draw_latency
from raq.report.plots.position_bias import draw_position_bias
from raq.report.plots.quality import draw_bars, draw_tradeoff
from raq.report.plots.significance import draw_critical_difference, draw_significance
from raq.report.plots.style import laid_out, plot_labels, save_png, style, subplots

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from raq.result import RunResult

log = logging.getLogger("raq.report.plots")

PLOT_KEYS = (
    "bars", "tradeoff", "significance", "critical_difference", "latency", "position_bias",
)  # fmt: skip
# A plot's drawer: the figure, or why the run cannot support it.
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
    theirs = hand_over(helper, result.summary_json, result.speed_boxes, out_dir)
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


def hand_over(
    helper: PlotHelper | None,
    summary_json: dict[str, Any],
    speed_boxes: dict[str, Any],
    out_dir: Path,
) -> list[str]:
    """Give a ready helper its share of the plots now (what they read is known before the
    rest of the run's result), so it draws while this process finishes the result; the
    plots the helper has for ``out_dir`` (given now or before), none when there is no helper
    to take them (``write_plots`` then draws them)."""
    if helper is not None and helper.job is not None and helper.job[0] == out_dir:
        return helper.job[1]  # handed over already
    if helper is None or not helper.ready():
        return []
    out_dir.mkdir(parents=True, exist_ok=True)
    keys = list(HELPER_KEYS)
    return keys if helper.send(summary_json, speed_boxes, out_dir, keys) else []


def draw_some(
    result: RunResult, out_dir: Path, keys: list[str], reasons: dict[str, str]
) -> dict[str, Path]:
    """Draw these plots (in PLOT_KEYS order) in raq's style; why any was not, into ``reasons``."""
    import matplotlib

    font_log = logging.getLogger("matplotlib.font_manager")
    font_level = font_log.level
    font_log.setLevel(logging.ERROR)  # CJK fallback fonts often lack a 'normal' weight: noise
    try:
        with matplotlib.rc_context(style()):
            return _draw_all(result, out_dir, reasons, keys)
    finally:
        font_log.setLevel(font_level)


def serve_helper() -> None:
    """The plot helper process (raq.report.plot_helper): prepare, say so, draw one job,
    answer, exit."""
    import gc
    import pickle
    import sys

    # One job and an exit: whatever garbage it makes goes with the process, and the collector's
    # passes over matplotlib's objects would only take CPU from the run beside it.
    gc.disable()
    logging.disable(logging.CRITICAL)  # the run logs the plots that failed, from the reasons
    prepare_drawing()
    sys.stdout.buffer.write(ready_line())
    sys.stdout.buffer.flush()
    # After saying ready: a run whose requests end now still hands over its plots, which then
    # wait for the rest of the rehearsal (tens of milliseconds) instead of going undrawn here.
    rehearse_drawing()
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

    plot_labels([])  # fills the font caches (font_families, drawable_codepoints)


def rehearse_drawing() -> bool:
    """Draw one small throwaway figure with the artists of the helper's plots (multi-line
    titles, bars with error bars and value labels, a legend, box plots) and encode it as a PNG.

    A process's first plot is about 20 ms slower than the same plot drawn again (caches that
    matplotlib fills on first use); the helper, idle until the run's requests end, pays that
    while it waits instead of in the run's last second. It is only a warm-up: should it fail,
    the real plots report their own failures. Whether it drew."""
    import io

    import matplotlib

    try:
        with matplotlib.rc_context(style()):
            fig, (bars, boxes) = subplots(1, 2, figsize=(4.0, 2.0))
            bars.bar([0, 1], [1.25, 1.75], yerr=[0.02, 0.02], capsize=3)
            bars.text(0, 1.3, "1.25", ha="center", va="bottom", fontsize=8)
            bars.axhline(1.5, linestyle="--", label="random judge")
            bars.legend(loc="upper left", fontsize=7.5)
            bars.set_title("Mean rank (rank 1 = best)\nover 2 questions")
            bars.set_ylabel("mean rank")
            stats = {"med": 1.0, "q1": 0.5, "q3": 1.5, "whislo": 0.0, "whishi": 2.0}
            boxes.bxp([{**stats, "fliers": [3.0], "label": "a"}], patch_artist=True)
            boxes.grid(axis="y", alpha=0.3)
            fig.suptitle("rehearsal")
            png = io.BytesIO()
            save_png(laid_out(fig), png)
            fig.clear()  # the helper's collector is off: leave no figure in reference cycles
    except Exception:  # a warm-up: the plots themselves say what fails
        return False
    return png.getvalue().startswith(b"\x89PNG")


def _draw_all(
    result: RunResult, out_dir: Path, reasons: dict[str, str], keys: list[str]
) -> dict[str, Path]:

    labels = plot_labels(list(result.summary_json["candidates"]))
    drawers: dict[str, Drawer] = {
        "bars": draw_bars,
        "tradeoff": draw_tradeoff,
        "significance": draw_significance,
        "critical_difference": draw_critical_difference,
        "latency": draw_latency,
        "position_bias": draw_position_bias,
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
            save_png(drawn, tmp)
            os.replace(tmp, path)
            written[key] = path
        finally:
            tmp.unlink(missing_ok=True)
    return written
