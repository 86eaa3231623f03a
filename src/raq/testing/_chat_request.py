"""Reading a chat-completion request as the fake server needs it: its headers as the server
logs them, its messages and their text, its size in prompt tokens, the output it asks for
(response_format, a tool to call, guided JSON, a max_tokens budget) and whether a
``Behaviour`` accepts that.

A malformed field never crashes the server: it reads as absent, or as a mode the server
refuses with 400, as a real server answers a test's odd body.
"""

from __future__ import annotations

from typing import Any

from raq.testing._behaviour import Behaviour, Body


class Headers(dict[str, str]):
    """Request headers keyed in lower case, looked up case-insensitively as HTTP does."""

    def __getitem__(self, key: str) -> str:
        return super().__getitem__(key.lower())

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and super().__contains__(key.lower())

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        return super().get(key.lower(), default)


def message_text(message: dict[str, Any]) -> str:
    """A message's text, whether content is a string or a list of content parts."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)
        )
    return ""


def chat_messages(body: Body) -> list[dict[str, Any]]:
    messages = body.get("messages")
    if not isinstance(messages, list):
        return []
    return [m for m in messages if isinstance(m, dict)]


def count_prompt_tokens(body: Body) -> int:
    return sum(len(message_text(m).split()) for m in chat_messages(body))


def last_user_text(body: Body) -> str:
    for message in reversed(chat_messages(body)):
        if message.get("role") == "user":
            return message_text(message)
    return ""


def response_format_type(body: Body) -> str | None:
    rf = body.get("response_format")
    if rf is None:
        return None
    kind = rf.get("type") if isinstance(rf, dict) else None
    return kind if isinstance(kind, str) else "<missing>"


def unsupported_mode(body: Body, behaviour: Behaviour) -> tuple[str, str] | None:
    """(message, param) naming the first mode the behaviour refuses, or None."""
    kind = response_format_type(body)
    if kind is not None:
        refused = (kind == "json_schema" and not behaviour.accept_json_schema) or (
            kind == "json_object" and not behaviour.accept_json_object
        )
        if refused or kind not in ("text", "json_schema", "json_object"):
            return f"response_format type {kind} is not supported", "response_format"
    if behaviour.guided_json == "refuse":
        for name in ("guided_json", "nvext"):
            if name in body:
                return f"Unrecognized request argument supplied: {name}", name
    if not behaviour.accept_tools:
        if body.get("tools"):
            return "tools is not supported", "tools"
        if body.get("tool_choice") is not None:
            return "tool_choice is not supported", "tool_choice"
    return None


def ignores_guidance(body: Body, behaviour: Behaviour) -> bool:
    """Whether the only output constraint asked for is a guided_json the server ignores."""
    if response_format_type(body) in ("json_schema", "json_object"):
        return False
    asked = [name for name in ("guided_json", "nvext") if name in body]
    honoured = {"top-level": "guided_json", "nvext": "nvext"}.get(behaviour.guided_json)
    return bool(asked) and honoured not in asked


def tool_to_call(body: Body) -> str | None:
    """The function a structured reply should call, or None when there is no tool to call."""
    tools = body.get("tools")
    choice = body.get("tool_choice")
    if not isinstance(tools, list) or not tools or choice == "none":
        return None
    if isinstance(choice, dict):
        forced = choice.get("function")
        if isinstance(forced, dict) and isinstance(forced.get("name"), str):
            return forced["name"]
    first = tools[0]
    function = first.get("function") if isinstance(first, dict) else None
    name = function.get("name") if isinstance(function, dict) else None
    return name if isinstance(name, str) else "tool"


def output_budget(body: Body) -> int | None:
    """The request's output budget (max_tokens, or max_completion_tokens), if it sets one."""
    for name in ("max_completion_tokens", "max_tokens"):
        value = body.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None
