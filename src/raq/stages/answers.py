"""Stage 1: ask a candidate one question and turn the completion into an Answer record."""

from __future__ import annotations

from typing import Any

from raq.config import CandidateConfig, PromptsConfig
from raq.core.metrics import count_words, estimate_tokens
from raq.core.records import Answer, Completion, QAItem
from raq.endpoints.client import ChatClient, Endpoint, RequestError, ThinkingUnfinished, cache_key


def fill(template: str, **values: str) -> str:
    """Replace {name} placeholders only; other braces in a template are left alone."""
    for name, value in values.items():
        template = template.replace("{" + name + "}", value)
    return template.replace("{{", "{").replace("}}", "}")


def answer_request(
    candidate: CandidateConfig, prompts: PromptsConfig, item: QAItem
) -> dict[str, Any]:
    """The chat-completion body for one question (everything but model and stream flags)."""
    with_context = candidate.use_context and item.context is not None
    if candidate.prompt is not None:
        template = candidate.prompt
    else:
        template = prompts.answer if with_context else prompts.answer_closed_book
    prompt = fill(
        template,
        question=item.question,
        context=(item.context or "") if candidate.use_context else "",
    )
    messages = []
    if candidate.system:
        messages.append({"role": "system", "content": candidate.system})
    messages.append({"role": "user", "content": prompt})
    return {"messages": messages, **candidate.params}


def answer_fingerprint(endpoint: Endpoint, body: dict[str, Any]) -> str:
    """What the stored answer was asked with. It is the response cache's key by design, so
    the request is hashed once and passed to the client as its cache key."""
    return cache_key(endpoint, body)


async def ask_candidate(
    client: ChatClient,
    endpoint: Endpoint,
    candidate: CandidateConfig,
    body: dict[str, Any],
    item: QAItem,
    fingerprint: str | None = None,
    *,
    keep_thinking: bool = True,
) -> Answer:
    """One answer with its speed metrics; a request that failed becomes an Answer with error.
    ``fingerprint``: ``answer_fingerprint(endpoint, body)``, if the caller has it (it is the
    cache key, so the request is not hashed twice). ``keep_thinking``: store the thinking's
    text (its words and tokens are counted either way)."""
    try:
        completion = await client.chat(endpoint, body, stream=candidate.stream, key=fingerprint)
    except ThinkingUnfinished as exc:  # failed, but what it thought (and cost) is kept
        thought = exc.completion
        thinking = thinking_fields(thought, keep_thinking)
        return Answer(
            question_id=item.id, candidate=candidate.name, answer=None, error=str(exc),
            latency_s=thought.latency_s, ttft_s=thought.ttft_s,
            **_token_fields(thought, body, "", thinking["thinking_tokens"]), **thinking,
        )  # fmt: skip
    except RequestError as exc:
        return Answer(question_id=item.id, candidate=candidate.name, answer=None, error=str(exc))
    text = completion.text.strip()
    words = count_words(text)
    thinking = thinking_fields(completion, keep_thinking)
    latency = completion.latency_s
    return Answer(
        question_id=item.id,
        candidate=candidate.name,
        answer=text,
        latency_s=latency,
        ttft_s=completion.ttft_s,
        words=words,
        words_per_second=words / latency if latency > 0 else None,
        cached=completion.cached,
        answer_ttft_s=completion.answer_ttft_s,
        **_token_fields(completion, body, text, thinking["thinking_tokens"]),
        **thinking,
        truncated=completion.finish_reason == "length",
    )


def _token_fields(
    completion: Completion, body: dict[str, Any], text: str, thinking_tokens: int
) -> dict[str, Any]:
    """Prompt and completion tokens, the server's or estimated (words × 1.3), thinking
    included in the completion tokens as servers count them."""
    prompt_tokens = completion.prompt_tokens
    if prompt_tokens is None:
        prompt_tokens = estimate_tokens(" ".join(str(m["content"]) for m in body["messages"]))
    completion_tokens = completion.completion_tokens
    if completion_tokens is None:
        completion_tokens = estimate_tokens(text) + thinking_tokens
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "tokens_estimated": completion.completion_tokens is None
        or completion.prompt_tokens is None,
    }


def thinking_fields(completion: Completion, keep_text: bool) -> dict[str, Any]:
    """A reply's thinking as Answer fields: its text (unless ``keep_text`` is off), words and
    tokens: the server's ``reasoning_tokens`` where it reports them, else words × 1.3, marked
    estimated. A reply with no thinking counts 0 of each."""
    thinking = completion.thinking
    tokens, estimated = completion.reasoning_tokens, False
    if tokens is None:
        tokens, estimated = estimate_tokens(thinking), thinking is not None
    return {
        "thinking": thinking if keep_text else None,
        "thinking_words": count_words(thinking),
        "thinking_tokens": tokens,
        "thinking_tokens_estimated": estimated,
    }
