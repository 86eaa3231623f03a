"""Reply functions for tests and the benchmark: a fixed text, an answerer that is right when the
prompt carries the answer, and fake judges that read raq's judge prompt and rank its answers.

Each is a ``Reply`` (a request body in, text or a JSON-able object out) for ``Behaviour.reply``.
They read raq's prompts as a model would, from the request alone, so they import nothing of raq
beyond this package.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from raq.testing._behaviour import Body, Reply
from raq.testing._chat_request import chat_messages, last_user_text, message_text

_TRUTH_PREFIX = "Based on the correct answer:"


def reply_text(text: str) -> Reply:
    """A reply function that always answers ``text``."""

    def reply(body: Body) -> str:
        return text

    return reply


_CONTEXT = re.compile(r"context:", re.IGNORECASE)
_SENTENCE = re.compile(r"^(.*?[.!?])(?=\s|$)")


def reply_from_context(n_words: int | None = None) -> Reply:
    """Answer with the first sentence after ``context:`` in the last user message.

    A fake answerer that is right when the prompt carries the answer, so tests can tell
    good and bad answers apart; ``n_words`` truncates it to make a worse answerer.
    """

    def reply(body: Body) -> str:
        text = last_user_text(body)
        match = _CONTEXT.search(text)
        if match is None:
            return "I do not know."
        rest = text[match.end() :].lstrip()
        line = rest.split("\n", 1)[0].strip()
        if not line:
            return "I do not know."
        sentence = _SENTENCE.match(line)
        answer = sentence.group(1) if sentence else line
        if n_words is not None:
            answer = " ".join(answer.split()[:n_words])
        return answer

    return reply


def parse_judge_prompt(body: Body) -> tuple[str, list[dict[str, Any]]]:
    """(truth, answers) from raq's judge prompt in the last user message.

    The answers are decoded as JSON from the first ``<answers>`` line, never cut at a
    closing tag, because an answer may itself contain ``</answers>`` or ``ID: 2 Answer:``.
    The truth is the rest of the ``Based on the correct answer:`` line outside the block
    (best effort: "" when absent). Raises ValueError when there is no answers block.
    """
    text = last_user_text(body)
    if "<answers>" not in text:  # a re-ask: the judge prompt is an earlier user message
        for message in reversed(chat_messages(body)):
            if message.get("role") == "user" and "<answers>" in message_text(message):
                text = message_text(message)
                break
    tag = re.search(r"^[ \t]*<answers>[ \t]*$", text, re.MULTILINE)
    if tag is not None:
        tag_start, tag_end = tag.start(), tag.end()
    else:
        tag_start = text.find("<answers>")
        if tag_start < 0:
            raise ValueError("judge prompt has no <answers> block")
        tag_end = tag_start + len("<answers>")
    bracket = text.find("[", tag_end)
    if bracket < 0:
        raise ValueError("judge prompt has no JSON array after <answers>")
    answers, end = json.JSONDecoder().raw_decode(text, bracket)
    if not isinstance(answers, list) or not all(isinstance(a, dict) for a in answers):
        raise ValueError("the <answers> block is not a JSON array of objects")
    truth = ""
    for line in (text[:tag_start] + "\n" + text[end:]).splitlines():
        stripped = line.strip()
        if stripped.startswith(_TRUTH_PREFIX):
            truth = stripped[len(_TRUTH_PREFIX) :].strip()
            break
    return truth, answers


def judge_reply(rank: Callable[[list[dict[str, Any]], Body], list[int]]) -> Reply:
    """A judge reply function: parses the judge prompt, answers ``{"ranking": rank(...)}``,
    with a ``rationale`` when the prompt asks for one."""

    def reply(body: Body) -> dict[str, Any]:
        _, answers = parse_judge_prompt(body)
        ranking = list(rank(answers, body))
        if '"rationale"' in str(body["messages"][-1].get("content", "")):
            return {"ranking": ranking, "rationale": f"ID {ranking[0]} matches the reference."}
        return {"ranking": ranking}

    return reply


def _words(text: str) -> set[str]:
    return set(re.findall(r"\w+", text.lower()))


def judge_by_overlap() -> Reply:
    """A plausible fake judge: most words shared with the truth first, then the more precise
    (fewer words), then by id."""

    def rank(answers: list[dict[str, Any]], body: Body) -> list[int]:
        truth, _ = parse_judge_prompt(body)
        truth_words = _words(truth)

        def key(answer: dict[str, Any]) -> tuple[int, int, Any]:
            words = _words(str(answer.get("answer", "")))
            return -len(words & truth_words), len(words), answer.get("id")

        return [a.get("id") for a in sorted(answers, key=key)]  # type: ignore[misc]

    return judge_reply(rank)


def judge_presented_order() -> Reply:
    """A maximally position-biased fake judge: the ids in the order they were presented."""

    def rank(answers: list[dict[str, Any]], body: Body) -> list[int]:
        return [a.get("id") for a in answers]  # type: ignore[misc]

    return judge_reply(rank)


_LOREM = "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor"
_VOCABULARY = (_LOREM + " incididunt ut labore et dolore magna aliqua").split()


def fixed_text(n_words: int) -> str:
    """A deterministic reply of ``n_words`` words, ending with a full stop."""
    words = [_VOCABULARY[i % len(_VOCABULARY)] for i in range(max(1, n_words))]
    return " ".join(words) + "."
