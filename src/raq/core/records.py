"""The records that flow between pipeline stages; units live in the field names."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class QAItem:
    """One question with its optional context and every acceptable ground-truth answer."""

    id: str
    question: str
    answers: tuple[str, ...]
    context: str | None = None


@dataclass(frozen=True)
class Completion:
    """What one chat-completion request returned, with the client's own timing."""

    text: str
    latency_s: float
    ttft_s: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    tool_arguments: str | None = None
    finish_reason: str | None = None
    cached: bool = False
    # What a reasoning model thought before ``text`` (raq.endpoints.thinking); None when it
    # showed none.
    thinking: str | None = None
    # Time to the first token of the answer (not of the thinking); streamed replies only.
    answer_ttft_s: float | None = None
    # usage.completion_tokens_details.reasoning_tokens, where the server reports it.
    reasoning_tokens: int | None = None


@dataclass(frozen=True)
class Answer:
    """A candidate's answer to one question (or the error that stopped it)."""

    question_id: str
    candidate: str
    answer: str | None
    latency_s: float | None = None
    ttft_s: float | None = None
    words: int | None = None
    words_per_second: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    tokens_estimated: bool = False
    error: str | None = None
    cached: bool = False
    # The thinking of a reasoning model, kept apart from ``answer`` (None: it showed none, or
    # store_thinking is off); its words and tokens are counted either way.
    thinking: str | None = None
    thinking_words: int | None = None
    thinking_tokens: int | None = None
    thinking_tokens_estimated: bool = False
    # Time to the first answer token: after the thinking, where ``ttft_s`` is the first token
    # of any kind. Equal to ``ttft_s`` for a model that did not think; None when not streamed.
    answer_ttft_s: float | None = None
    truncated: bool = False  # kept, but stopped by max_tokens (finish_reason "length")

    @property
    def ok(self) -> bool:
        return self.error is None and self.answer is not None


@dataclass(frozen=True)
class Judgment:
    """One judge's ranking of one question's answers in one repeat.

    ``presented_order`` lists candidate names by presented position (position 1 first; the ID
    shown to the judge is the position), planted control answers included under their
    control names. ``ranks`` maps candidate → rank among the candidates (1 = best; ties share
    the average rank); ``controls`` maps each planted control → the rank the judge gave it
    among everything it ranked. Candidates whose answer failed are absent from all three.
    """

    question_id: str
    repeat: int
    judge: str
    presented_order: tuple[str, ...]
    raw_output: str | None
    ranks: dict[str, float] = field(default_factory=dict)
    mode: str | None = None
    attempts: int = 1
    error: str | None = None
    cached: bool = False
    controls: dict[str, float] = field(default_factory=dict)
    rationale: str | None = None  # the judge's reason, when its config asked for one
    # Tokens of every ask (re-asks included), thinking included, for the judge's cost.
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    thinking_words: int | None = None
    thinking_tokens: int | None = None
    tokens_estimated: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None and bool(self.ranks)

    def position_ranks(self) -> dict[int, float]:
        """The rank of the item at each presented position (1-based), over everything the judge
        ranked: the candidates' ranks among themselves fill the places the controls left."""
        taken = set(self.controls.values())
        free = iter(r for r in range(1, len(self.ranks) + len(self.controls) + 1) if r not in taken)
        full = dict(self.controls)
        if self.controls:
            for name in sorted(self.ranks, key=lambda n: self.ranks[n]):
                full[name] = float(next(free))
        else:
            full.update(self.ranks)
        return {i + 1: full[name] for i, name in enumerate(self.presented_order) if name in full}
