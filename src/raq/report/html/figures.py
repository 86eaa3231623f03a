"""The plots section: each PNG embedded as a data: URI with its caption, or a note saying why
it was not drawn."""

from __future__ import annotations

import base64
from html import escape
from pathlib import Path

PLOT_CAPTIONS = {
    "bars": (
        "Candidates compared",
        "The original article's figure: mean rank with its 95% bootstrap CI over questions "
        "(rank 1 = best; the dashed line is what a judge ranking at random would give), mean "
        "words per second and mean answer length, each over the n stated in its title.",
    ),
    "significance": (
        "Significance matrix",
        "Adjusted p-value of every pair from the test above; dark green cells differ "
        "significantly, pink cells do not.",
    ),
    "critical_difference": (
        "Critical difference diagram",
        "Mean ranks on one axis (best on the left); candidates joined by a horizontal bar "
        "cannot be told apart by the test.",
    ),
    "latency": (
        "Latency distributions",
        "Request latency (start to last byte) and time to first token per successful answer; "
        "boxes span the middle half, whiskers 1.5 × the interquartile range, dots are outliers.",
    ),
    "position_bias": (
        "Judge position bias",
        "Mean rank each judge gave to the answer shown at each position; a judge that reads "
        "content keeps close to the dashed line at every position.",
    ),
}


def plots_section(plots: dict[str, Path], skipped: dict[str, str]) -> str:
    if not plots and not skipped:
        return ""
    out = ["<h2>Plots</h2>"]
    order = [*PLOT_CAPTIONS, *(k for k in plots if k not in PLOT_CAPTIONS)]
    for key in order:
        title, caption = PLOT_CAPTIONS.get(key, (key, ""))
        if key in plots:
            data = base64.b64encode(Path(plots[key]).read_bytes()).decode("ascii")
            out.append(
                f'<figure><img src="data:image/png;base64,{data}" alt="{escape(title)}">'
                f"<figcaption><strong>{escape(title)}.</strong> {escape(caption)}</figcaption>"
                "</figure>"
            )
        elif key in skipped:
            out.append(
                f'<p class="note"><strong>{escape(title)}</strong> not drawn: '
                f"{escape(skipped[key])}.</p>"
            )
    return "\n".join(out)
