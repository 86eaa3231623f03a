"""Separate a reasoning model's thinking from its answer, whatever form the server sends it in.

Servers deliver thinking in one of two ways, and raq reads both:

- a separate field beside ``content``: ``reasoning`` (current vLLM, Ollama) or
  ``reasoning_content`` (older vLLM, DeepSeek's API, llama.cpp, SGLang, several gateways), in
  a streamed ``delta`` or a non-streamed ``message``. The client collects it; it is passed
  here as ``separate``.
- inline at the start of ``content``, where the server runs no reasoning parser:
  ``<think>…</think>answer`` (DeepSeek-R1, Qwen3, Nemotron), ``…</think>answer`` without the
  opening tag (DeepSeek-R1's chat template opens the block itself), ``◁think▷…◁/think▷answer``
  (Kimi), and GPT-OSS's harmony channels
  ``<|channel|>analysis<|message|>…<|end|><|start|>assistant<|channel|>final<|message|>answer``.

The contract of ``split_thinking``: the answer is what the judge reads and what words, words/s
and length are measured on; the thinking is everything the model produced before it. Inline
tags are recognised only at the start of the content (or, for the missing opening tag, a
``</think>`` with no ``<think>`` before it): an answer that merely mentions a tag later on is
left alone. ``unfinished`` says the content ended inside the thinking (no closing tag, no final
channel): there is no answer, only thinking.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
KIMI_OPEN, KIMI_CLOSE = "◁think▷", "◁/think▷"
# The pairs that open and close a thinking block at the start of the content.
_TAG_PAIRS = ((THINK_OPEN, THINK_CLOSE), (KIMI_OPEN, KIMI_CLOSE))

# GPT-OSS harmony: the content may begin with the assistant's first channel header.
_HARMONY_START = re.compile(r"^(?:<\|start\|>assistant)?<\|channel\|>")
# The header of the final channel; "final" may be followed by a recipient or a <|constrain|>.
_HARMONY_FINAL = re.compile(
    r"(?:<\|start\|>assistant)?<\|channel\|>final\b[^<]*(?:<\|constrain\|>[^<]*)?<\|message\|>"
)
_HARMONY_TOKEN = re.compile(r"<\|(?:start|end|channel|message|constrain|return|call)\|>")
_HARMONY_TRAILER = re.compile(r"(?:<\|(?:return|end|call)\|>\s*)+$")


@dataclass(frozen=True)
class Split:
    """An answer and the thinking before it.

    ``thinking`` is None when the model showed none. ``answer_offset`` is where the answer's
    first visible character sits in the raw content (the client times the first answer token
    by it); it is ``len(content)`` when there is no answer. ``tagged``: the content held
    thinking markup (even an empty block), so ``answer`` is not just the content stripped.
    """

    answer: str
    thinking: str | None
    unfinished: bool = False
    answer_offset: int = 0
    tagged: bool = True


def split_thinking(content: str, separate: str | None = None) -> Split:
    """The answer and thinking of one reply. ``content`` is the raw content; ``separate`` is the
    text of a separate reasoning field, when the server sent one. Thinking from both (a server
    that sends the field and still leaves tags in the content) is joined, field first."""
    inline = _split_inline(content)
    if not separate and inline.thinking is None:
        return inline
    parts = [t for t in (separate, inline.thinking) if t and t.strip()]
    thinking = "\n".join(t.strip() for t in parts) if parts else None
    return Split(inline.answer, thinking, inline.unfinished, inline.answer_offset, inline.tagged)


def _split_inline(content: str) -> Split:
    start = len(content) - len(content.lstrip())
    head = content[start:]
    for opening, closing in _TAG_PAIRS:
        if head.startswith(opening):
            body_at = start + len(opening)
            end = content.find(closing, body_at)
            if end < 0:
                return Split("", content[body_at:], True, len(content))
            return _after(content, content[body_at:end], end + len(closing))
    if _HARMONY_START.match(head):
        return _split_harmony(content, start)
    end = content.find(THINK_CLOSE)
    if end >= 0 and THINK_OPEN not in content[:end]:  # DeepSeek-R1: the opening tag omitted
        return _after(content, content[:end], end + len(THINK_CLOSE))
    return Split(content.strip(), None, False, start, tagged=False)


def _after(content: str, thinking: str, answer_at: int) -> Split:
    """The Split whose answer starts at ``answer_at`` (leading whitespace skipped)."""
    rest = content[answer_at:]
    offset = answer_at + len(rest) - len(rest.lstrip())
    answer = rest.strip()
    return Split(answer, thinking, False, offset if answer else len(content))


def _split_harmony(content: str, start: int) -> Split:
    final = _HARMONY_FINAL.search(content, start)
    if final is None:
        if content[start:].startswith("<|channel|>final"):  # header still incomplete
            return Split("", None, True, len(content))
        return Split("", _harmony_text(content[start:]), True, len(content))
    thinking = _harmony_text(content[start : final.start()])
    rest = _HARMONY_TRAILER.sub("", content[final.end() :])
    offset = final.end() + len(rest) - len(rest.lstrip())
    answer = rest.strip()
    return Split(answer, thinking or None, False, offset if answer else len(content))


def _harmony_text(text: str) -> str:
    """The words of harmony analysis messages, without their headers and special tokens."""
    text = re.sub(r"<\|channel\|>\w+(?:[^<]*)<\|message\|>", "\n", text)
    return _HARMONY_TOKEN.sub("\n", text.replace("<|start|>assistant", "")).strip()
