"""Planted controls: where they are shown, how they leave the candidates' ranks, and how a
judge qualifies on them."""

from __future__ import annotations

import itertools
import math
from collections import Counter

import pytest
from scipy import stats as ss

from raq.core.records import Judgment, QAItem
from raq.stages.controls import FALLBACK_WRONG, REFERENCE, WRONG, control_texts
from raq.stages.judge import presented_order, split_ranking, with_controls
from raq.stats.controls import ControlTally, wilson_interval


def test_controls_take_every_position_equally_and_leave_the_candidates_order_alone() -> None:
    names = ["a", "b", "c"]
    slots = 4 * 5 * 4  # four full cycles of the 20 ordered position pairs of 5 places
    positions: Counter = Counter()
    for slot in range(slots):
        order = presented_order(names, seed=9, slot=slot)
        shown = with_controls(order, (REFERENCE, WRONG), seed=9, slot=slot)
        assert [n for n in shown if n not in (REFERENCE, WRONG)] == order
        positions.update((name, shown.index(name)) for name in (REFERENCE, WRONG))
    assert set(positions.values()) == {slots // 5}


def test_a_ranking_splits_into_candidate_ranks_and_control_ranks() -> None:
    order = ["b", REFERENCE, "a", WRONG, "c"]
    candidates, controls = split_ranking(order, [2, 3, 1, 5, 4])  # ref, a, b, c, wrong
    assert candidates == {"a": 1.0, "b": 2.0, "c": 3.0}
    assert controls == {REFERENCE: 1.0, WRONG: 5.0}
    judgment = Judgment("q", 0, "j", tuple(order), "{}", candidates, controls=controls)
    assert judgment.position_ranks() == {1: 3.0, 2: 1.0, 3: 2.0, 4: 5.0, 5: 4.0}


def test_the_wrong_answer_is_another_questions_reference_sharing_no_word() -> None:
    item = QAItem("q1", "Capital of France?", ("Paris", "Paris, France"))
    texts = control_texts(item, [("Paris",), ("France",), ("Berlin",)])
    assert texts == {REFERENCE: "Paris", WRONG: "Berlin"}
    assert control_texts(item, [("paris",)])[WRONG] == FALLBACK_WRONG


def test_wilson_interval_matches_the_closed_form() -> None:
    low, high = wilson_interval(7, 20)
    z = ss.norm.isf(0.025)
    p, n = 7 / 20, 20
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    assert (low, high) == pytest.approx((centre - half, centre + half))
    assert wilson_interval(0, 10)[0] == 0.0
    assert wilson_interval(10, 10)[1] == pytest.approx(1.0)


def judgments(kind: str, n: int) -> list[Judgment]:
    """n judgments of 3 candidates plus controls by a judge of one kind."""
    out = []
    for slot in range(n):
        order = with_controls(
            presented_order(["a", "b", "c"], 1, slot), (REFERENCE, WRONG), seed=1, slot=slot
        )
        if kind == "good":  # reference first, wrong last, candidates in between
            ranking = [order.index(REFERENCE) + 1]
            ranking += [order.index(n) + 1 for n in ("a", "b", "c")]
            ranking += [order.index(WRONG) + 1]
        else:  # by position
            ranking = list(range(1, 6))
        candidates, controls = split_ranking(order, ranking)
        out.append(Judgment("q", 0, "j", tuple(order), "", candidates, controls=controls))
    return out


def test_a_judge_that_knows_right_from_wrong_qualifies() -> None:
    tally = ControlTally("j")
    for judgment in judgments("good", 30):
        tally.add(judgment)
    score = tally.score()
    assert score is not None and score.qualified
    assert score.reference_first_rate == 1.0 and score.wrong_last_rate == 1.0
    assert score.chance == pytest.approx(0.2)


def test_a_judge_that_ranks_by_position_is_unqualified() -> None:
    tally = ControlTally("j")
    for judgment in judgments("positional", 80):
        tally.add(judgment)
    score = tally.score()
    assert score is not None and not score.qualified
    assert score.reference_first_rate == pytest.approx(0.2)  # exactly chance: counterbalanced
    assert "UNQUALIFIED" in score.line()


def test_a_judge_without_controls_has_no_score() -> None:
    tally = ControlTally("ref")
    tally.add(Judgment("q", 0, "ref", ("a", "b"), "", {"a": 1.0, "b": 2.0}))
    assert tally.score() is None


def test_every_order_of_the_candidates_is_kept_whatever_the_control_places() -> None:
    for order in itertools.permutations(["x", "y", "z", "w"]):
        for slot in range(30):
            shown = with_controls(list(order), (REFERENCE, WRONG), seed=2, slot=slot)
            assert [n for n in shown if not n.startswith("#")] == list(order)
