"""Numbers as text for people: one rule for every rendering (None and NaN as an en dash, never
'nan'; p-values to three significant digits)."""

from __future__ import annotations

import math
from typing import Any


def fmt(value: Any, digits: int = 2) -> str:
    """A number as text; None and NaN as an en dash (never 'nan' in a report)."""
    if value is None:
        return "–"
    if isinstance(value, float):
        return "–" if not math.isfinite(value) else f"{value:.{digits}f}"
    return str(value)


def fmt_p(value: Any) -> str:
    """A p-value: three significant digits, or '< 0.001'."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return "< 0.001" if value < 0.001 else f"{value:.3g}"
