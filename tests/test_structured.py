"""Structured-output modes: NIM's guided_json (top level and inside nvext), and a server that
ignores it recognised by its reply."""

from __future__ import annotations

from pathlib import Path

import pytest

from raq.endpoints.client import ChatClient, Endpoint
from raq.endpoints.structured import StructuredAsker, honoured, mode_fields
from raq.stages.judge import parse_ranking, ranking_fields
from raq.store import ResponseCache
from raq.testing import Behaviour, FakeOpenAIServer

MESSAGES = [{"role": "user", "content": "Rank 1 and 2."}]
SCHEMA = {"type": "object", "properties": {"ranking": {}}, "required": ["ranking"]}


def test_guided_json_goes_at_the_top_level_or_inside_nvext() -> None:
    assert mode_fields("guided_json", SCHEMA) == {"guided_json": SCHEMA}
    assert mode_fields("nvext_guided_json", SCHEMA) == {"nvext": {"guided_json": SCHEMA}}


@pytest.mark.parametrize(
    ("text", "ok"),
    [('{"ranking": [1, 2]}', True), ('Sure: {"ranking": [1, 2]}', False), ("{}", False),
     ("1, 2", False)],
)  # fmt: skip
def test_an_ignorable_mode_counts_as_honoured_only_for_json_of_the_schema(
    text: str, ok: bool
) -> None:
    assert honoured("guided_json", {"guided_json": SCHEMA}, text) is ok
    assert honoured("json_object", {}, text) is True  # refused when unsupported, not ignored


async def _ask(server: FakeOpenAIServer, cache: ResponseCache | None = None) -> tuple:
    asker = StructuredAsker()
    endpoint = Endpoint(name="judge", base_url=server.base_url, model="judge")
    async with ChatClient(max_retries=0, cache=cache) as client:
        asked = await asker.ask(
            client, endpoint, MESSAGES, params={},
            fields=lambda mode: ranking_fields(mode, 2),
            parse=lambda raw: parse_ranking(raw, 2),
            reask=lambda reason: reason, max_reasks=0,
        )  # fmt: skip
    return asked, asker


@pytest.mark.parametrize(
    ("guided", "mode", "sent"),
    [("top-level", "guided_json", 2), ("nvext", "nvext_guided_json", 3),
     ("ignore", "json_object", 4), ("refuse", "json_object", 4)],
)  # fmt: skip
async def test_guided_json_is_tried_right_after_json_schema_and_an_ignored_one_is_skipped(
    guided: str, mode: str, sent: int
) -> None:
    reply = Behaviour(
        reply=lambda body: {"ranking": [2, 1]}, accept_json_schema=False, guided_json=guided
    )
    with FakeOpenAIServer({"judge": reply}) as server:
        asked, asker = await _ask(server)
        assert server.count("judge") == sent
    assert asked.value == [2, 1] and asked.mode == mode and asker.mode == mode


async def test_a_cached_reply_of_an_ignored_mode_is_not_taken_for_the_mode(tmp_path: Path) -> None:
    """The ignored guided_json reply is in the cache; a fresh run must not pick that mode."""
    cache = ResponseCache(tmp_path / "c.sqlite")
    reply = Behaviour(
        reply=lambda body: {"ranking": [2, 1]}, accept_json_schema=False, guided_json="ignore"
    )
    with FakeOpenAIServer({"judge": reply}) as server:
        await _ask(server, cache)
        asked, asker = await _ask(server, cache)
        assert server.count("judge") == 4  # the second ask came from the cache
    assert asker.mode == "json_object" and asked.value == [2, 1]
    cache.close()
