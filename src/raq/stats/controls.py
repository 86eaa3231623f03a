"""Scoring the planted controls: how often each LLM judge put the reference answer first and
above the wrong one, with Wilson intervals, and whether it beats chance (qualifies). What the
controls are and how they are planted: raq.stages.controls."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from raq.core.records import Judgment
from raq.stages.controls import CONTROLS, REFERENCE, WRONG

Z95 = 1.959963984540054


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion (sensible at 0, 1 and small n)."""
    if n == 0:
        return math.nan, math.nan
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class ControlScore:
    """One judge's record on the planted controls, with 95% Wilson intervals and chance."""

    judge: str
    n: int  # successful judgments that held both controls
    reference_first: int
    wrong_last: int
    reference_above_wrong: int
    reference_first_rate: float
    reference_first_ci95: tuple[float, float]
    wrong_last_rate: float
    wrong_last_ci95: tuple[float, float]
    reference_above_wrong_rate: float
    reference_above_wrong_ci95: tuple[float, float]
    chance: float  # what a positional or random judge scores on first (and on last)
    qualified: bool
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        """One sentence for the terminal and the top of the reports."""
        verdict = "qualified" if self.qualified else "UNQUALIFIED"
        return f"judge '{self.judge}' is {verdict}: {self.reason}"


class ControlTally:
    """Counts one judge's planted-control outcomes as its judgments stream past."""

    def __init__(self, judge: str) -> None:
        self.judge = judge
        self.n = 0
        self.reference_first = 0
        self.wrong_last = 0
        self.reference_above_wrong = 0
        self.chance_sum = 0.0

    def add(self, judgment: Judgment) -> None:
        controls = judgment.controls
        if not judgment.ok or set(controls) != set(CONTROLS):
            return
        shown = len(judgment.ranks) + len(controls)
        self.n += 1
        self.reference_first += controls[REFERENCE] == 1
        self.wrong_last += controls[WRONG] == shown
        self.reference_above_wrong += controls[REFERENCE] < controls[WRONG]
        self.chance_sum += 1 / shown

    def score(self) -> ControlScore | None:
        """None when the judge ranked no controls (a reference judge, or controls off)."""
        if not self.n:
            return None
        chance = self.chance_sum / self.n
        first_ci = wilson_interval(self.reference_first, self.n)
        last_ci = wilson_interval(self.wrong_last, self.n)
        above_ci = wilson_interval(self.reference_above_wrong, self.n)
        first_rate = self.reference_first / self.n
        last_rate = self.wrong_last / self.n
        above_rate = self.reference_above_wrong / self.n
        qualified = first_ci[0] > chance and above_ci[0] > 0.5
        reason = (
            f"reference answer ranked first in {first_rate:.0%} of {self.n} judgments "
            f"(95% CI {first_ci[0]:.0%}–{first_ci[1]:.0%}; chance {chance:.0%}), above the wrong "
            f"answer in {above_rate:.0%} ({above_ci[0]:.0%}–{above_ci[1]:.0%}; chance 50%), "
            f"wrong answer last in {last_rate:.0%}"
        )
        if not qualified:
            reason += (
                "; it does not clearly beat chance, so its rankings are left out of the verdict"
            )
        return ControlScore(
            self.judge, self.n, self.reference_first, self.wrong_last, self.reference_above_wrong,
            first_rate, first_ci, last_rate, last_ci, above_rate, above_ci, chance, qualified,
            reason,
        )  # fmt: skip
