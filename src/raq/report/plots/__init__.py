"""PNG figures of a run: the article's bar charts, which candidates differ, and judge checks.

matplotlib and scikit-posthocs are imported inside the functions, so importing this module
costs nothing and ``raq --help`` stays instant. Figures are drawn on their own Agg canvas and
never through pyplot, so the user's backend (a notebook's inline one) is left as it was and no
figure of raq's appears after a notebook cell. A plot the data cannot support is
skipped with a reason rather than drawn empty, and no plot can stop the report.
"""

from raq.report.plots.drawing import (
    PLOT_KEYS,
    draw_some,
    hand_over,
    prepare,
    prepare_drawing,
    serve_helper,
    write_plots,
)
from raq.report.plots.style import DPI, plot_labels

__all__ = [
    "DPI",
    "PLOT_KEYS",
    "draw_some",
    "hand_over",
    "plot_labels",
    "prepare",
    "prepare_drawing",
    "serve_helper",
    "write_plots",
]
