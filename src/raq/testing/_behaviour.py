"""How the fake server answers one model: its reply function, latency and pacing, the output
modes it accepts, its thinking and its faults (``Behaviour``).

The one object a test configures per model; everything else in the fake server reads it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from raq.testing._faults import check_fault

DEFAULT_TEXT = "This is a reply from the fake server."
# How a reasoning model's thinking reaches the client, as real servers send it:
# a separate field (current vLLM and Ollama: "reasoning"; older vLLM, DeepSeek's API,
# llama.cpp: "reasoning_content") or inline in the content, where no reasoning parser runs:
# <think>…</think> (DeepSeek-R1, Qwen3, Nemotron), …</think> with the opening tag left to the
# chat template (DeepSeek-R1), ◁think▷…◁/think▷ (Kimi) and GPT-OSS's harmony channels.
THINKING_FORMS = frozenset(
    {"reasoning", "reasoning_content", "think_tags", "think_close_only", "kimi", "harmony"}
)
INLINE_THINKING_MARKERS = {
    "think_tags": ("<think>", "</think>"),
    "think_close_only": ("", "</think>"),
    "kimi": ("◁think▷", "◁/think▷"),
    "harmony": (
        "<|channel|>analysis<|message|>",
        "<|end|><|start|>assistant<|channel|>final<|message|>",
    ),
}

# A request's JSON body, and the functions a behaviour is given: a reply and a fault sequence.
Body = dict[str, Any]
Reply = Callable[[Body], "str | dict[str, Any]"]
FaultFn = Callable[[int, Body], "str | None"]


def _default_reply(body: Body) -> str:
    """Answer every request with the same short sentence."""
    return DEFAULT_TEXT


@dataclass
class Behaviour:
    """How the fake server answers one model: reply, timing, accepted modes and faults.

    Timing: a non-streamed reply takes ``latency_s``. A stream sends its first content chunk
    after ``ttft_s`` (default ``latency_s``); later chunks come at ``tokens_per_s`` if set,
    otherwise spread evenly so that the stream ends at ``latency_s`` (all at once when
    ``ttft_s`` is unset). Faults apply per model in request order (see ``FAULT_KINDS``):

    - ``429``/``500``/``502``/``503``: that status; ``429:retry-after=V`` sends Retry-After V
      (any value: "2", "soon", "nan", an HTTP date);
    - ``reset``, ``hang``, ``non-json`` (an HTML 200), ``cut-stream`` (the body ends mid-way);
    - ``empty``: a finished reply with no text; ``not-permutation``: ``{"ranking": [1, 1]}``;
    - ``done-without-finish``: a stream that sends its first chunk, then ``[DONE]`` and no
      finish_reason, as llama-cpp-python's server (and litellm in front of it) ends a stream it
      interrupts (non-streamed requests are answered normally);
    - ``length``: the first half of the reply's words, with finish_reason ``length``;
    - ``401-echo``/``500-echo``: an error body (JSON / HTML) that echoes the Authorization
      header; ``stream-error-echo``: an error event inside the stream that echoes it (a 200
      JSON body without choices when not streamed);
    - ``500-hostile``: an error body of ``HOSTILE_TEXT`` (markup, escapes, HTML, a formula).
    """

    reply: Reply = _default_reply
    latency_s: float = 0.0
    ttft_s: float | None = None
    tokens_per_s: float | None = None
    accept_json_schema: bool = True
    accept_json_object: bool = True
    accept_tools: bool = True
    # guided_json (NVIDIA NIM, vLLM): "top-level" honours a top-level guided_json (current NIM,
    # vLLM), "nvext" honours nvext.guided_json (older NIM), "ignore" ignores both as llama.cpp
    # does (a JSON reply then comes wrapped in prose, as an unconstrained model writes it),
    # "refuse" answers 400 as OpenAI does for an argument it does not know.
    guided_json: str = "refuse"
    send_usage: bool = True
    faults: Sequence[str | None] | FaultFn = ()
    # A reasoning model: what it thinks before its reply (text or a function of the request),
    # how the thinking is sent (THINKING_FORMS), and whether usage reports reasoning_tokens.
    # Thinking and reply are paced and cut by max_tokens alike, a word to a token.
    thinking: str | Callable[[Body], str] | None = None
    thinking_form: str = "reasoning"
    send_reasoning_tokens: bool = True

    def __post_init__(self) -> None:
        if self.thinking_form not in THINKING_FORMS:
            forms = ", ".join(sorted(THINKING_FORMS))
            raise ValueError(f"unknown thinking_form {self.thinking_form!r}; expected {forms}")
        if self.guided_json not in ("top-level", "nvext", "ignore", "refuse"):
            raise ValueError(
                f"guided_json must be top-level, nvext, ignore or refuse, not {self.guided_json!r}"
            )
        if isinstance(self.faults, str):
            raise TypeError("faults must be a sequence of fault kinds or a callable, not a str")
        if not callable(self.faults):
            self.faults = tuple(self.faults)
            for fault in self.faults:
                check_fault(fault)

    def fault_for(self, index: int, body: Body) -> str | None:
        """The fault for this model's request number ``index`` (0-based), or None."""
        if callable(self.faults):
            fault = self.faults(index, body)
            check_fault(fault)
            return fault
        return self.faults[index] if index < len(self.faults) else None
