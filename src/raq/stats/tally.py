"""Running tallies of judge ranks: everything the statistics need, fed one question at a time.

The question is the unit of analysis. A judgment is the ranks one judge gave the candidates of
one question in one repeat; a judge's repeats re-measure the same answers, and a panel's judges
rank the same answers, so neither is new evidence. ``consensus_ranks`` folds a question's
judgments into one ranking (each judge's mean rank over its repeats, averaged over the judges,
re-ranked within the question), and the tests see one block per question: a deterministic
judge repeated five times gives exactly the p-values of one judgment, and a noisy judge's
repeats reduce noise instead of inflating n. The rank tests need far less than every rank:
Dunn's test needs, per candidate, how often each rank value occurred (midranks and the tie
correction follow exactly from those counts); Friedman and its post-hoc tests need sums over
complete blocks; the question bootstrap and the paired tests need each question's rank per
candidate. So a run's statistics hold a few numbers per candidate and two per question and
candidate, never a table of ranks, and stay exact: ``tests/test_stats_reference.py`` holds
them to scikit-posthocs and scipy run on the full table folded the same way.

Judgments of one question must arrive together (the run store yields them in question order);
a question's first judgment closes the one before.
"""

from __future__ import annotations

import itertools
import math
from array import array
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from raq.stats.concordance import kendall_tau, kendall_w
from raq.stats.ranks import midranks

_NO_QUESTION = object()


def consensus_ranks(judgments: Iterable[tuple[str, Mapping[str, float]]]) -> dict[str, float]:
    """One question's ranking from its (judge, ranks) judgments: each judge's mean rank of a
    candidate over its repeats, averaged over the judges that ranked it, then re-ranked within
    the question (1 = best, ties share the average rank)."""
    per_judge: dict[str, dict[str, list[float]]] = {}
    for judge, ranks in judgments:
        sums = per_judge.setdefault(judge, {})
        for name, rank in ranks.items():
            entry = sums.setdefault(name, [0.0, 0.0])
            entry[0] += float(rank)
            entry[1] += 1.0
    totals: dict[str, list[float]] = {}
    for sums in per_judge.values():
        for name, (total, count) in sums.items():
            entry = totals.setdefault(name, [0.0, 0.0])
            entry[0] += total / count
            entry[1] += 1.0
    names = list(totals)
    # Rounded so that equal means reached by different float paths tie, as they should.
    means = [round(total / count, 9) for total, count in totals.values()]
    reranked, _ = midranks(means)
    return dict(zip(names, reranked, strict=True))


class RankTally:
    """Sufficient statistics of one set of question-level ranks (a run's, or one judge's).

    ``names`` are the candidates whose ranks are tallied. A block is one question's consensus
    ranking; a block that ranks all the candidates is complete (the Friedman test uses those
    only).
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
    """One question's judgments, kept until the question ends (a few per question)."""

    question: object = _NO_QUESTION
    blocks: list[tuple[int, str, dict[str, float], dict[int, float]]] = field(default_factory=list)


class RankStream:
    """A run's ranks as they stream from the store: the verdict's tally (question-level
    consensus over the verdict judges), one question-level tally per judge (for a panel), and
    the judge diagnostics' tallies (position bias, self-consistency, agreement).

    ``names_by_judge`` gives each judge's candidates (those it ranked at least once);
    ``verdict_judges`` the judges whose rankings make the verdict (default: all of them; a
    judge that failed its planted controls is left out).
    """

    def __init__(
        self,
        names_by_judge: Mapping[str, Iterable[str]],
        verdict_judges: Iterable[str] | None = None,
    ) -> None:
        self.names_by_judge = {judge: sorted(set(n)) for judge, n in names_by_judge.items()}
        self.judges = sorted(self.names_by_judge)
        self.verdict_judges = (
            list(self.judges)
            if verdict_judges is None
            else [j for j in self.judges if j in set(verdict_judges)]
        )
        verdict_names = {n for j in self.verdict_judges for n in self.names_by_judge[j]}
        self.names = sorted({n for names in self.names_by_judge.values() for n in names})
        self.overall = RankTally(verdict_names)
        self.n_judgments = 0  # judgments folded into the verdict's questions
        self.by_judge = (
            {judge: RankTally(self.names_by_judge[judge]) for judge in self.judges}
            if len(self.judges) > 1
            else {}
        )
        # Position bias: per judge, (position, rank) → count (the table shown), and per judge
        # and judgment size a tally of the question-level mean rank at each position (the
        # Friedman test of rank by position, questions as blocks).
        self.position_counts: dict[str, dict[tuple[float, float], int]] = {
            judge: {} for judge in self.judges
        }
        self.position_tallies: dict[str, dict[int, RankTally]] = {j: {} for j in self.judges}
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
        position_ranks: Mapping[int, float] | None = None,
    ) -> None:
        """One judgment that ranked candidates (failed ones are not ranks).

        ``positions`` are the candidates' presented positions; ``position_ranks`` the rank
        the judge gave the item at each presented position over everything it ranked
        (planted controls included). Without it the candidates' ranks by their order of
        presentation stand in.
        """
        if question_id != self._buffer.question:
            self._close_question()
            self._buffer = _QuestionBuffer(question_id)
        ranks = {name: float(rank) for name, rank in ranks.items()}
        counts = self.position_counts[judge]
        shown: dict[float, float] = {}
        for name, rank in ranks.items():
            position = positions.get(name) if positions else None
            if position is not None and position == position:  # not None, not NaN
                shown[float(position)] = rank
        if position_ranks is None:
            by_position = {i + 1: shown[p] for i, p in enumerate(sorted(shown))}
        else:
            by_position = {int(p): float(r) for p, r in position_ranks.items()}
        for position, rank in by_position.items():
            key = (float(position), rank)
            counts[key] = counts.get(key, 0) + 1
        self._buffer.blocks.append((repeat, judge, ranks, by_position))

    @property
    def has_ranks(self) -> bool:
        """Whether any judge ranked anything (the diagnostics need no verdict)."""
        return any(self.position_counts.values())

    def close(self) -> RankStream:
        self._close_question()
        self._buffer = _QuestionBuffer()
        self.overall.close()
        for tally in self.by_judge.values():
            tally.close()
        for tallies in self.position_tallies.values():
            for tally in tallies.values():
                tally.close()
        return self

    def _close_question(self) -> None:
        blocks = self._buffer.blocks
        if not blocks:
            return
        question = self._buffer.question
        verdict = set(self.verdict_judges)
        in_verdict = [(judge, ranks) for _, judge, ranks, _ in blocks if judge in verdict]
        if in_verdict:
            self.n_judgments += len(in_verdict)
            self.overall.add(question, consensus_ranks(in_verdict))
        for judge in self.judges:
            own = [(judge, ranks) for _, j, ranks, _ in blocks if j == judge]
            if own and self.by_judge:
                self.by_judge[judge].add(question, consensus_ranks(own))
            self._position_block(question, judge, [b[3] for b in blocks if b[1] == judge])
            names = self.names_by_judge[judge]
            rows = [ranks_[1] for ranks_ in own if all(n in ranks_[1] for n in names)]
            if len(rows) >= 2:
                w = kendall_w([midranks([row[n] for n in names])[0] for row in rows])
                if math.isfinite(w):
                    self.self_consistency[judge].append(w)
        if len(self.judges) < 2:
            return
        nan = math.nan
        by_repeat: dict[int, dict[str, list[float]]] = {}
        for repeat, judge, ranks, _ in blocks:
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

    def _position_block(
        self, question: object, judge: str, judgments: list[dict[int, float]]
    ) -> None:
        """One question's mean rank at each presented position, over the judge's judgments
        that showed the same number of answers (positions 1..m all present)."""
        by_size: dict[int, list[dict[int, float]]] = {}
        for by_position in judgments:
            size = len(by_position)
            if size >= 2 and set(by_position) == set(range(1, size + 1)):
                by_size.setdefault(size, []).append(by_position)
        for size, rows in by_size.items():
            tallies = self.position_tallies[judge]
            if size not in tallies:
                tallies[size] = RankTally(str(p) for p in range(1, size + 1))
            mean = {str(p): sum(row[p] for row in rows) / len(rows) for p in range(1, size + 1)}
            tallies[size].add(question, mean)


WordsRanks = dict[str, dict[str, dict[tuple[float, float], int]]]


def words_rank_counts(rows: Iterable[tuple[str, str, object, float, float]]) -> WordsRanks:
    """(judge, candidate, question, words, rank) rows, the rows of one question together →
    per judge and candidate, (words, the question's mean rank) → count: the length-bias tally,
    one pair per question (repeats re-measure the same answer)."""
    tally = WordsRankTally()
    for row in rows:
        tally.add(*row)
    return tally.counts()


class WordsRankTally:
    """``words_rank_counts`` fed a rank at a time: a question's ranks must come together (a
    record pass reads them question by question), in any order of judges, candidates and
    repeats."""

    def __init__(self) -> None:
        self._counts: WordsRanks = {}
        self._question: object = _NO_QUESTION
        # (judge, candidate) → [words, rank total, ranks] for the question being read.
        self._open: dict[tuple[str, str], list[Any]] = {}

    def add(self, judge: str, candidate: str, question: object, words: float, rank: float) -> None:
        if question != self._question:
            self._close_question()
            self._question = question
        entry = self._open.get((judge, candidate))
        if entry is None:
            self._open[(judge, candidate)] = [words, float(rank), 1]
        else:
            entry[1] += float(rank)
            entry[2] += 1

    def counts(self) -> WordsRanks:
        """The tally, judges and candidates in name order, once every rank is in (it closes
        the question being read; the counts returned are the tally's own)."""
        self._close_question()
        return {
            judge: {candidate: by_candidate[candidate] for candidate in sorted(by_candidate)}
            for judge, by_candidate in sorted(self._counts.items())
        }

    def _close_question(self) -> None:
        for (judge, candidate), (words, total, count) in self._open.items():
            counts = self._counts.setdefault(judge, {}).setdefault(candidate, {})
            pair = (float(words), round(total / count, 9))
            counts[pair] = counts.get(pair, 0) + 1
        self._open = {}
        self._question = _NO_QUESTION
