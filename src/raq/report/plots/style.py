"""raq's look for every plot: fonts that can draw the candidates' names (CJK included), labels
that stay readable, colours that stay the same from plot to plot, and figures on their own Agg
canvas (never pyplot, so a notebook's backend is left as it was)."""

from __future__ import annotations

import math
import warnings
from functools import lru_cache
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path

    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

DPI = 110
PAD_INCHES = 0.15  # the margin around what a plot draws
# zlib level for the PNGs: 3 encodes these plots about 8 % faster than PIL's default 6, and
# the files come out 4–5 % smaller too (flat colours and text: scripts/BENCH.md, fifth look).
PNG_COMPRESS_LEVEL = 3
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


def plot_labels(names: list[str]) -> dict[str, str]:
    """Axis label per candidate: the name, shortened, with ``#k`` when the fonts cannot draw it.

    ``k`` is the candidate's 1-based place in ``names`` (the report's table order), so a reader
    can match a label like ``#2 ??-large`` to its row. ``$`` is escaped against mathtext.
    """
    drawable = drawable_codepoints()
    labels: dict[str, str] = {}
    for k, name in enumerate(names, start=1):
        text = shorten(name)
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


def shorten(name: str) -> str:
    """Keep both ends of a long name: model names differ at the start and at the version."""
    if len(name) <= MAX_LABEL_CHARS:
        return name
    head = (MAX_LABEL_CHARS - 1) // 2
    return name[:head] + "…" + name[-(MAX_LABEL_CHARS - 1 - head) :]


def drawable_text(value: object) -> str:
    """A user string (run or judge name) safe to draw: no mathtext, no missing glyphs."""
    drawable = drawable_codepoints()
    text = "".join(ch if ord(ch) in drawable or ch.isspace() else "?" for ch in str(value))
    return text.replace("$", r"\$")


@lru_cache(maxsize=1)
def font_families() -> tuple[str, ...]:
    from matplotlib import font_manager

    installed = {f.name for f in font_manager.fontManager.ttflist}
    return ("DejaVu Sans", *(f for f in CJK_FAMILIES if f in installed))


@lru_cache(maxsize=1)
def drawable_codepoints() -> frozenset[int]:
    """Every code point one of the configured fonts has a glyph for."""
    from matplotlib import font_manager, ft2font

    points: set[int] = set()
    for family in font_families():
        try:
            path = font_manager.findfont(
                font_manager.FontProperties(family=family), fallback_to_default=False
            )
            points.update(ft2font.FT2Font(path).get_charmap())
        except (ValueError, RuntimeError, OSError):
            continue
    return frozenset(points)


def style() -> dict[str, Any]:
    return {
        "font.family": list(font_families()),
        "font.size": 9.5,
        "axes.titlesize": 10.5,
        "axes.labelsize": 9.5,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "figure.facecolor": "white",
        "savefig.facecolor": "white",
        # Glyphs as drawn, not snapped to the pixel grid: at these sizes the text reads the
        # same, and FreeType's hinting took a tenth of every plot's drawing time.
        "text.hinting": "no_hinting",
    }


def subplots(*grid: int, figsize: tuple[float, float], **options: Any) -> tuple[Figure, Any]:
    """``pyplot.subplots`` without pyplot: a figure on its own Agg canvas, which the user's
    backend never sees. It is laid out at the resolution it is saved at, so the text measured
    for its layout is measured once (matplotlib caches text metrics per resolution)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=DPI)
    FigureCanvasAgg(fig)
    return fig, fig.subplots(*grid, **options)


def laid_out(fig: Figure, rect: tuple[float, float, float, float] | None = None) -> Figure:
    """Tight layout; axes added outside the grid (sign_plot's colour bar) only draw a warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        fig.tight_layout(rect=rect)
    return fig


def save_png(fig: Figure, path: Path | IO[bytes]) -> None:
    """The PNG of ``fig`` cropped to what it draws plus PAD_INCHES, the same bytes as
    ``savefig(bbox_inches="tight")`` at the same compression, for about 10 % less: that draws
    the whole figure once more only to measure it, while its extent can be measured without
    drawing."""
    fig.set_dpi(DPI)  # measured at the resolution it is saved at, as savefig measures it
    extent = fig.get_tightbbox(fig.canvas.get_renderer()).padded(PAD_INCHES)
    # Laid out already (``laid_out``): without this, savefig draws the whole figure once more
    # before saving it, for the layout engine that tight_layout leaves in its place.
    fig.set_layout_engine(None)
    fig.savefig(
        path, format="png", dpi=DPI, bbox_inches=extent,
        pil_kwargs={"compress_level": PNG_COMPRESS_LEVEL},
    )  # fmt: skip


def candidate_colors(names: list[str]) -> dict[str, Any]:
    """One colour per candidate, the same in every plot."""
    from matplotlib import colormaps

    cmap = colormaps["tab10" if len(names) <= 10 else "tab20"]
    return {name: cmap(i % cmap.N) for i, name in enumerate(names)}


def rotate_ticks(ax: Axes, labels: list[str]) -> None:
    """Rotate candidate labels once they would collide; long or many names lean further."""
    longest = max((len(t) for t in labels), default=0)
    if (len(labels) <= 4 and longest <= 12) or (len(labels) <= 2 and longest <= 20):
        return
    angle = 35 if longest <= 18 else 50
    for tick in ax.get_xticklabels():
        tick.set_rotation(angle)
        tick.set_horizontalalignment("right")
        tick.set_rotation_mode("anchor")


def n_text(counts: list[int], unit: str) -> str:
    """'n = 24 ranks each' or 'n = 20–24 ranks per candidate'."""
    if not counts:
        return f"n = 0 {unit}"
    low, high = min(counts), max(counts)
    if low == high:
        return f"n = {low} {unit} each"
    return f"n = {low}–{high} {unit} per candidate"


def short_number(value: float | None) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if abs(value) >= 100:
        return f"{value:.0f}"
    return f"{value:.2f}" if abs(value) < 10 else f"{value:.1f}"
