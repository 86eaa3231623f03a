"""One candidate's answers summarised as they stream from the store: speed, length, tokens,
cost and failures.

Counts and sums need nothing kept. The percentiles need the values themselves, so each metric's
values of this one candidate are kept as float64 (8 bytes each) until its summary is done,
and the next candidate starts from nothing: a summary never holds a table of the run's answers.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable
from typing import Any

import numpy as np

from raq.core.metrics import cost_usd

# Speed metrics drawn as box plots (report's latency.png), per candidate.
BOXED = ("latency_s", "ttft_s")
# The means a summary entry shows at its top level (the same as in its distributions).
MEANS = ("words_per_second", "answer_words", "ttft_s", "answer_ttft_s", "latency_s")
# The thinking metrics of a summary entry's "thinking" part (reasoning models).
THINKING = ("thinking_words", "thinking_tokens", "thinking_share_of_latency")


def error_kind(error: str) -> str:
    """What errors are counted by in reports: the text before the first colon ("HTTP 503")."""
    return error.split(":")[0][:80]


def summarise_answers(
    rows: Iterable[tuple], price: tuple[float, float] | None = None
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """A candidate's summary entry from its ``RunStore.ANSWER_METRIC_FIELDS`` rows (in question
    order), and the box-plot statistics of its latency and TTFT.

    Inter-token latency (time per output token) and output tokens per second are measured
    after the first token: (latency - TTFT) over (completion tokens - 1).

    Thinking (reasoning models): its words and tokens per successful answer, and its share of
    the latency, (time to first answer token - TTFT) ÷ latency: the time from the first
    thinking token to the first answer token (streamed answers only).
    """
    names = ("latency_s", "ttft_s", "answer_ttft_s", "words_per_second", "words", *THINKING)
    samples = {name: array("d") for name in names}
    thought = thinking_estimated = paid_failures = estimated_failures = 0
    per_token, tokens_per_s = array("d"), array("d")
    answers = ok_answers = cached = empty = estimated = truncated = 0
    prompt = completion = prompt_reported = 0
    cost = 0.0
    errors: dict[str, int] = {}
    for row in rows:
        (_, _, ok, is_empty, latency, ttft, words, wps, prompt_tokens, completion_tokens,
         tokens_estimated, was_cached, error, answer_ttft, thinking_words, thinking_tokens,
         thinking_tokens_estimated, was_truncated) = row  # fmt: skip
        answers += 1
        cached += bool(was_cached)
        if error:
            kind = error_kind(error)
            errors[kind] = errors.get(kind, 0) + 1
        if not ok:
            if price is not None and completion_tokens:  # paid, though it failed
                cost += cost_usd(prompt_tokens or 0, completion_tokens, *price)
                paid_failures += 1
                estimated_failures += bool(tokens_estimated)
            continue
        ok_answers += 1
        empty += bool(is_empty)
        truncated += bool(was_truncated)
        estimated += bool(tokens_estimated)
        for name, value in (("latency_s", latency), ("ttft_s", ttft), ("words", words),
                            ("words_per_second", wps), ("answer_ttft_s", answer_ttft),
                            ("thinking_words", thinking_words),
                            ("thinking_tokens", thinking_tokens)):  # fmt: skip
            if value is not None:
                samples[name].append(value)
        thought += bool(thinking_words or thinking_tokens)
        thinking_estimated += bool(thinking_tokens_estimated)
        if answer_ttft is not None and ttft is not None and latency:
            samples["thinking_share_of_latency"].append(max(0.0, answer_ttft - ttft) / latency)
        prompt += prompt_tokens or 0
        completion += completion_tokens or 0
        prompt_reported += prompt_tokens is not None
        if price is not None:
            cost += cost_usd(prompt_tokens or 0, completion_tokens or 0, *price)
        if ttft is not None and latency and (completion_tokens or 0) > 1:
            decode_s, after_first = latency - ttft, completion_tokens - 1
            if decode_s > 0:
                per_token.append(decode_s / after_first)
                tokens_per_s.append(after_first / decode_s)
    arrays = {name: np.frombuffer(values) for name, values in samples.items()}
    distributions: dict[str, Any] = {
        "latency_s": distribution(arrays["latency_s"]),
        "ttft_s": distribution(arrays["ttft_s"]),
        "answer_ttft_s": distribution(arrays["answer_ttft_s"]),
        "time_per_output_token_s": distribution(np.frombuffer(per_token)),
        "output_tokens_per_second": distribution(np.frombuffer(tokens_per_s)),
        "words_per_second": distribution(arrays["words_per_second"]),
        "answer_words": distribution(arrays["words"]),
    }
    entry: dict[str, Any] = {
        **{key: distributions[key]["mean"] for key in MEANS},
        "failed_answers": answers - ok_answers,
        "answers": answers,
        "cached_answers": cached,
        "empty_answers": empty,
        "truncated_answers": truncated,  # kept, but cut by max_tokens (finish_reason "length")
        "errors": errors,
        "distributions": distributions | {"tokens_estimated": estimated > 0},
        "thinking": {
            "answers_with_thinking": thought,
            "n_answers": ok_answers,
            "tokens_total": int(arrays["thinking_tokens"].sum()),
            "tokens_estimated": thinking_estimated,
            **{name: distribution(arrays[name]) for name in THINKING},
        },
        "tokens": {
            "prompt": prompt,
            "completion": completion,
            "prompt_reported": prompt_reported,
            "completion_estimated": estimated,
            "n_answers": ok_answers,
        },
    }
    if price is not None:
        entry["cost_usd"] = {
            "total": cost,
            "per_answer": cost / ok_answers if ok_answers else None,
            "estimated": estimated + estimated_failures > 0,
            "n_answers": ok_answers,
            # Failed answers whose tokens were paid for (a reasoning model that ran out of
            # max_tokens while thinking): in the total, so per_answer is per useful answer.
            "n_failed_answers_paid": paid_failures,
        }
    return entry, {name: _box(arrays[name]) for name in BOXED if len(arrays[name])}


def distribution(values: np.ndarray) -> dict[str, float | int | None]:
    """n, mean and p50/p90/p99 (numpy's linear interpolation) of one metric's values."""
    if not len(values):
        return {"n": 0, "mean": None, "p50": None, "p90": None, "p99": None}
    p50, p90, p99 = np.percentile(values, [50, 90, 99])
    return {"n": len(values), "mean": float(values.mean()), "p50": p50, "p90": p90, "p99": p99}


def _box(values: np.ndarray) -> dict[str, Any]:
    """What matplotlib's boxplot draws for these values (quartiles, whiskers, outliers)."""
    from matplotlib.cbook import boxplot_stats

    return boxplot_stats(values)[0]
