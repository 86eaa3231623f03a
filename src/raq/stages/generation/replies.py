"""The shape of the generator's reply, asked for and read back: {"items": [{question, answer}]}.

The same shape is described three ways (a line of prompt text, a JSON schema, the request
fields of each structured-output mode), and ``parse_items`` reads it leniently from whatever
came back (fenced JSON, a bare list, JSON inside prose), since not every server constrains it.
"""

from __future__ import annotations

import json
import re
from typing import Any

from raq.endpoints.structured import first_json_object, mode_fields

TOOL_NAME = "return_items"


def reply_shape(with_context: bool) -> str:
    extra = ', "context": "..."' if with_context else ""
    return f'Reply with JSON only: {{"items": [{{"question": "...", "answer": "..."{extra}}}]}}'


def items_schema(with_context: bool, k: int, *, bounded: bool) -> dict[str, Any]:
    """The JSON schema of a reply; every property required, as OpenAI strict mode wants."""
    props = {"question": {"type": "string"}, "answer": {"type": "string"}}
    if with_context:
        props["context"] = {"type": "string"}
    item = {
        "type": "object",
        "properties": props,
        "required": list(props),
        "additionalProperties": False,
    }
    items: dict[str, Any] = {"type": "array", "items": item}
    if bounded:  # grammar-constrained servers (llama.cpp) use these; OpenAI strict mode does not
        items |= {"minItems": 1, "maxItems": k}
    return {
        "type": "object",
        "properties": {"items": items},
        "required": ["items"],
        "additionalProperties": False,
    }


def items_fields(mode: str, with_context: bool, k: int) -> dict[str, Any]:
    """The request fields that ask for k items in one structured-output mode."""
    return mode_fields(
        mode,
        items_schema(with_context, k, bounded=False),
        bounded_schema=items_schema(with_context, k, bounded=True),
        tool_name=TOOL_NAME,
    )


_FENCE = re.compile(r"^```[a-zA-Z]*\s*|\s*```$")


def parse_items(output: str | None) -> tuple[list[dict[str, Any]] | None, str]:
    """The reply's items, or None with the reason; accepts {"items": [...]}, a list, or prose."""
    if not output or not output.strip():
        return None, "empty reply"
    text = _FENCE.sub("", output.strip())
    try:
        data: Any = json.loads(text)
    except ValueError:
        data = first_json_object(text) or _first_json_array(text)
    if isinstance(data, dict):
        if "items" in data:
            data = data["items"]
        elif "question" in data:
            data = [data]
        else:
            data = next((v for v in data.values() if isinstance(v, list)), None)
    if not isinstance(data, list):
        return None, 'no JSON {"items": [...]} in the reply'
    items = [x for x in data if isinstance(x, dict)]
    if not items:
        return None, "the reply holds no items"
    return items, ""


def _first_json_array(text: str) -> list[Any] | None:
    decoder = json.JSONDecoder()
    for match in re.finditer(r"\[", text):
        try:
            value, _ = decoder.raw_decode(text, match.start())
        except ValueError:
            continue
        if isinstance(value, list):
            return value
    return None
