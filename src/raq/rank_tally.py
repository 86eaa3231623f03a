"""Running tallies of judge ranks: everything the statistics need, fed one block at a time.

A block is one judgment: the ranks one judge gave the candidates of one question in one
repeat. The rank tests need far less than every rank: Dunn's test needs, per candidate, how
often each rank value occurred (midranks and the tie correction follow exactly from those
counts); Friedman and its post-hoc tests need sums over complete blocks; the question
bootstrap needs each question's rank sum and count per candidate. So a run's statistics hold
a few numbers per candidate and two per question and candidate, never a table of ranks, and
stay exact: ``tests/test_stats_reference.py`` holds them to scikit-posthocs and scipy on the
full table.

Blocks of one question must arrive together (the run store yields them in question order);
a question's first block closes the one before.
"""

from __future__ import annotations

import itertools
import math
from array import array
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

_NO_QUESTION = object()


def midrank_map(counts: Mapping[float, int]) -> dict[float, float]:
    """Each value's average rank (1-based, ties share it) among values given as value → count."""
    midrank, below = {}, 0
    for value in sorted(counts):
        midrank[value] = below + (counts[value] + 1) / 2
        below += counts[value]
    return midrank


def tie_sum(counts: Iterable[int]) -> float:
    """Σ(t³ - t) over the sizes of groups of tied values: the usual tie correction term."""
    return float(sum(t**3 - t for t in counts))


def midranks(values: list[float]) -> tuple[list[float], float]:
    """Average ranks of a few values (1 = smallest; ties share their mean rank) and Σ(t³ - t)."""
    counts = merge_counts({v: 1} for v in values)
    rank_of = midrank_map(counts)
    return [rank_of[v] for v in values], tie_sum(counts.values())


class RankTally:
    """Sufficient statistics of one set of ranks (a run's, or one judge's) for the tests.

    ``names`` are the candidates whose ranks are tallied; a block that ranks all of them is
    complete (the Friedman test uses those only).
    """

    def __init__(self, names: Iterable[str]) -> None:
        self.names = sorted(set(names))
        self._index = {name: i for i, name in enumerate(self.names)}
        k = len(self.names)
        self.value_counts: list[dict[float, int]] = [{} for _ in range(k)]
        self.n_blocks = 0
        self.n_ranks = 0
        self.n_questions = 0
        # Friedman over complete blocks, ranks re-ranked within each block.
        self.complete_blocks = 0
        self.complete_questions = 0
        self.complete_rank_sums = [0.0] * k
        self.complete_squares = 0.0  # Σ of squared within-block ranks
        self.complete_ties = 0.0  # Σ over blocks of Σ(t³ - t)
        # Head to head: wins of i over j (ties 1/2) and blocks where both were ranked.
        self.wins = [[0.0] * k for _ in range(k)]
        self.shared = [[0] * k for _ in range(k)]
        # Per question (in arrival order), each candidate's rank sum and count: the bootstrap
        # resamples questions, so these are all it needs.
        self.question_sums: array[float] = array("d")
        self.question_counts: array[float] = array("d")
        self._question: object = _NO_QUESTION
        self._sums = [0.0] * k
        self._counts = [0.0] * k
        self._question_complete = False

    def add(self, question_id: object, ranks: Mapping[str, float]) -> None:
        """One block's ranks (candidate → rank); names outside ``names`` are an error."""
        if question_id != self._question:
            self._close_question()
            self._question = question_id
        if not ranks:
            return
        index = self._index
        ranked = [(index[name], float(rank)) for name, rank in ranks.items()]
        self.n_blocks += 1
        self.n_ranks += len(ranked)
        for i, rank in ranked:
            counts = self.value_counts[i]
            counts[rank] = counts.get(rank, 0) + 1
            self._sums[i] += rank
            self._counts[i] += 1
        for (i, a), (j, b) in itertools.permutations(ranked, 2):
            self.shared[i][j] += 1
            self.wins[i][j] += 1.0 if a < b else 0.5 if a == b else 0.0
        if len(ranked) == len(self.names):
            reranked, ties = midranks([rank for _, rank in ranked])
            self.complete_blocks += 1
            self.complete_ties += ties
            for (i, _), rank in zip(ranked, reranked, strict=True):
                self.complete_rank_sums[i] += rank
                self.complete_squares += rank * rank
            self._question_complete = True

    def close(self) -> RankTally:
        """Close the last question; call once every block is in."""
        self._close_question()
        self._question = _NO_QUESTION
        return self

    def _close_question(self) -> None:
        if self._question is _NO_QUESTION or not any(self._counts):
            self._question_complete = False
            return
        self.n_questions += 1
        self.complete_questions += self._question_complete
        self.question_sums.extend(self._sums)
        self.question_counts.extend(self._counts)
        k = len(self.names)
        self._sums = [0.0] * k
        self._counts = [0.0] * k
        self._question_complete = False

    def ranked_names(self) -> list[str]:
        """The candidates with at least one rank, sorted."""
        return [name for name, counts in zip(self.names, self.value_counts, strict=True) if counts]


@dataclass
class _QuestionBuffer:
    """One question's blocks, kept until the question ends (a few per question)."""

    question: object = _NO_QUESTION
    blocks: list[tuple[int, str, dict[str, float]]] = field(default_factory=list)


class RankStream:
    """A run's ranks as they stream from the store: the overall tally, one per judge (for a
    panel), and the judge diagnostics' tallies (position bias, self-consistency, agreement).

    ``names_by_judge`` gives each judge's candidates (those it ranked at least once).
    """

    def __init__(self, names_by_judge: Mapping[str, Iterable[str]]) -> None:
        self.names_by_judge = {judge: sorted(set(n)) for judge, n in names_by_judge.items()}
        self.judges = sorted(self.names_by_judge)
        self.names = sorted({n for names in self.names_by_judge.values() for n in names})
        self.overall = RankTally(self.names)
        self.by_judge = (
            {judge: RankTally(self.names_by_judge[judge]) for judge in self.judges}
            if len(self.judges) > 1
            else {}
        )
        # Position bias: per judge, (position, rank) → count.
        self.position_counts: dict[str, dict[tuple[float, float], int]] = {
            judge: {} for judge in self.judges
        }
        # Self-consistency: per judge, Kendall's W of each question with 2+ complete repeats.
        # One float per question (array: 8 bytes each, not a Python float object).
        self.self_consistency: dict[str, array[float]] = {
            judge: array("d") for judge in self.judges
        }
        # Agreement between judges, per (question, repeat).
        self.taus: dict[tuple[str, str], array[float]] = {
            pair: array("d") for pair in itertools.combinations(self.judges, 2)
        }
        self.agreement_ws: array[float] = array("d")
        self._buffer = _QuestionBuffer()

    def add(
        self,
        question_id: object,
        repeat: int,
        judge: str,
        ranks: Mapping[str, float],
        positions: Mapping[str, float | None] | None = None,
    ) -> None:
        """One judgment that ranked candidates (failed ones are not ranks)."""
        if question_id != self._buffer.question:
            self._close_question()
            self._buffer = _QuestionBuffer(question_id)
        ranks = {name: float(rank) for name, rank in ranks.items()}
        self.overall.add(question_id, ranks)
        if self.by_judge:
            self.by_judge[judge].add(question_id, ranks)
        counts = self.position_counts[judge]
        for name, rank in ranks.items():
            position = positions.get(name) if positions else None
            if position is not None and position == position:  # not None, not NaN
                key = (float(position), rank)
                counts[key] = counts.get(key, 0) + 1
        self._buffer.blocks.append((repeat, judge, ranks))

    def close(self) -> RankStream:
        self._close_question()
        self._buffer = _QuestionBuffer()
        self.overall.close()
        for tally in self.by_judge.values():
            tally.close()
        return self

    def _close_question(self) -> None:
        from raq.stats import kendall_tau, kendall_w

        blocks = self._buffer.blocks
        if not blocks:
            return
        for judge in self.judges:
            names = self.names_by_judge[judge]
            rows = [
                [ranks[n] for n in names]
                for _, j, ranks in blocks
                if j == judge and all(n in ranks for n in names)
            ]
            if len(rows) >= 2:
                w = kendall_w([midranks(row)[0] for row in rows])
                if math.isfinite(w):
                    self.self_consistency[judge].append(w)
        if len(self.judges) < 2:
            return
        nan = math.nan
        by_repeat: dict[int, dict[str, list[float]]] = {}
        for repeat, judge, ranks in blocks:
            by_repeat.setdefault(repeat, {})[judge] = [ranks.get(n, nan) for n in self.names]
        for by_judge in by_repeat.values():
            for a, b in self.taus:
                if a in by_judge and b in by_judge:
                    tau = kendall_tau(by_judge[a], by_judge[b])
                    if math.isfinite(tau):
                        self.taus[(a, b)].append(tau)
            rows = list(by_judge.values())
            if len(rows) == len(self.judges) and not any(v != v for row in rows for v in row):
                w = kendall_w(rows)
                if math.isfinite(w):
                    self.agreement_ws.append(w)


def words_rank_counts(
    rows: Iterable[tuple[str, float, float, int]],
) -> dict[str, dict[tuple[float, float], int]]:
    """(judge, words, rank, count) rows → per judge, (words, rank) → count: the length-bias
    tally."""
    out: dict[str, dict[tuple[float, float], int]] = {}
    for judge, words, rank, count in rows:
        counts = out.setdefault(judge, {})
        key = (float(words), float(rank))
        counts[key] = counts.get(key, 0) + count
    return out


def merge_counts(tallies: Iterable[Mapping[Any, int]]) -> dict[Any, int]:
    """Sum count dictionaries key by key."""
    out: dict[Any, int] = {}
    for tally in tallies:
        for key, count in tally.items():
            out[key] = out.get(key, 0) + count
    return out
