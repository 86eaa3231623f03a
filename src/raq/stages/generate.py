"""Write a QA dataset with an independent LLM: synthetic (documents, topics) or from seeds.

Why it is built this way:
- Every request goes through ``ChatClient``, so retries, limits and the response cache are the
  evaluation's own. The request plan (which chunk, topic or seeds each request gets) is a pure
  function of the seed, the sources and the request's index, so a re-run replays the cache and
  costs nothing: resuming is re-running.
- Responses are committed in plan order, never in completion order, and requests are sent in
  waves whose size depends only on the results committed so far, so the same responses always
  give the same dataset and a re-run sends exactly the requests the first run sent.
- Answers are verified, not trusted: extractive answers must occur in their chunk, answers may
  not copy the question, and duplicates are dropped against earlier items and the seeds
  (see ``Deduplicator``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import math
import os
import random
import re
import zlib
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

from pydantic import Field, field_validator, model_validator

from raq.config import (
    LOCAL_BASE_URL,
    CacheConfig,
    DatasetConfig,
    EndpointConfig,
    StrictModel,
    existing_path,
    load_env_file,
    load_yaml_model,
)
from raq.core.atomic import temporary_beside
from raq.core.errors import ConfigError, DatasetError
from raq.core.metrics import _CJK, answer_tokens, normalize_answer
from raq.core.progress import Progress, make_progress
from raq.core.records import QAItem
from raq.dataset import BUILTIN_PREFIX, LOCAL_BUILDERS, load_items, load_rows, lookup_field
from raq.endpoints.client import ChatClient, Endpoint, endpoint_for
from raq.endpoints.local import serving
from raq.endpoints.structured import StructuredAsker, first_json_object, mode_fields
from raq.store import open_cache

__all__ = [
    "Deduplicator",
    "GenerateConfig",
    "GenerationReport",
    "check_independence",
    "chunk_text",
    "generate",
    "generate_async",
    "load_generate_config",
    "parse_items",
]

Mode = Literal["documents", "topics", "seeds"]
TEXT_SUFFIXES = (".txt", ".md")
NEAR_DUPLICATE_JACCARD = 0.8
DEFAULT_TEMPERATURE = 0.7  # some variety between requests; params.temperature overrides it
TOOL_NAME = "return_items"
# Rotated through requests (seeded), so repeated chunks or topics get different prompts.
ANGLES = (
    "facts stated directly",
    "names, places and dates",
    "numbers and quantities",
    "causes and reasons",
    "definitions and terms",
    "processes and steps",
    "comparisons and relations",
    "purposes and consequences",
)


# ---------------------------------------------------------------------------------------------
# Config


class DocumentsConfig(StrictModel):
    """Passages to write questions about: a folder or file of .txt/.md, or a dataset's contexts.

    ``path`` may also name a dataset file (.jsonl, .csv, .parquet, builtin:…), as a short form
    of ``dataset: {path: …}``; a hub dataset needs the ``dataset`` form.
    """

    path: str | None = None
    dataset: DatasetConfig | None = None
    chunk_words: int = Field(default=200, ge=10)
    overlap_words: int = Field(default=30, ge=0)

    @model_validator(mode="after")
    def _one_source(self) -> DocumentsConfig:
        if (self.path is None) == (self.dataset is None):
            raise ValueError("give exactly one of path (a folder, .txt or .md file) or dataset")
        if self.overlap_words >= self.chunk_words:
            raise ValueError(
                f"overlap_words ({self.overlap_words}) must be smaller than "
                f"chunk_words ({self.chunk_words})"
            )
        return self

    def source_dataset(self) -> DatasetConfig | None:
        """The dataset whose context column is chunked, or None for plain text files."""
        if self.dataset is not None:
            return self.dataset
        assert self.path is not None
        if self.path.startswith(BUILTIN_PREFIX) or Path(self.path).suffix in LOCAL_BUILDERS:
            return DatasetConfig(path=self.path)
        return None


class SeedsConfig(DatasetConfig):
    """Seed examples (any dataset raq can load) and how many each request shows."""

    per_request: int = Field(default=3, ge=1, le=20)

    def as_dataset(self) -> DatasetConfig:
        return DatasetConfig.model_validate(self.model_dump(exclude={"per_request"}))


class GenerateConfig(StrictModel):
    """How to write a dataset; ``mode`` may be left out when only one source is given."""

    name: str = Field(default="qa-gen", min_length=1)
    seed: int = 0
    generator: EndpointConfig
    mode: Mode | None = None
    documents: DocumentsConfig | None = None
    topics: list[str] | None = None
    description: str | None = None
    seeds: SeedsConfig | None = None
    instructions: str | None = Field(default=None, description="extra rules added to prompts")
    n: int = Field(default=100, ge=1)
    per_request: int = Field(default=5, ge=1, le=50)
    extractive: bool = True
    structured_output: Literal[
        "auto", "json_schema", "guided_json", "nvext_guided_json", "json_object", "tools", "text"
    ] = "auto"
    max_reasks: int = Field(default=2, ge=0, le=10)
    concurrency: int = Field(default=16, ge=1)
    timeout_s: float = Field(default=120.0, gt=0)
    max_retries: int = Field(default=5, ge=0)
    retry_base_s: float = Field(default=0.5, ge=0, description="first backoff, doubling")
    retry_max_s: float = Field(default=30.0, ge=0, description="longest backoff or Retry-After")
    max_consecutive_failures: int = Field(default=20, ge=1)
    env_file: str | None = "env/var.env"
    cache: CacheConfig = CacheConfig()
    forbid_models: list[EndpointConfig] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _infer_mode(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("mode") is None:
            given = [m for m in ("documents", "seeds") if data.get(m)]
            if data.get("topics") or data.get("description"):
                given.append("topics")
            if len(given) == 1:
                return {**data, "mode": given[0]}
        return data

    @field_validator("topics")
    @classmethod
    def _topics(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        topics = [t.strip() for t in value]
        if not all(topics):
            raise ValueError("a topic is empty")
        if len(set(topics)) != len(topics):
            raise ValueError("a topic is listed twice")
        return topics

    @model_validator(mode="after")
    def _consistent(self) -> GenerateConfig:
        g = self.generator
        if not (g.base_url and g.model):
            raise ValueError("generator: needs base_url and model")
        if self.mode is None:
            raise ValueError("mode: set documents, topics or seeds (more than one source is given)")
        if self.mode == "documents" and self.documents is None:
            raise ValueError("mode: documents needs a documents section")
        if self.mode == "topics" and not (self.topics or self.description):
            raise ValueError("mode: topics needs topics or a description")
        if self.mode == "seeds" and self.seeds is None:
            raise ValueError("mode: seeds needs a seeds section")
        problem = _independence_problem(g, self.forbid_models)
        if problem:
            raise ValueError(f"generator: {problem}")
        return self


def _independence_problem(generator: EndpointConfig, candidates: list[EndpointConfig]) -> str:
    for candidate in candidates:
        if candidate.identity() == generator.identity():
            return (
                f"generator '{generator.name}' is candidate '{candidate.name}' (same base_url "
                "and model): a model may not write the questions it will be tested on"
            )
    return ""


def check_independence(generator: EndpointConfig, candidates: list[EndpointConfig]) -> None:
    """Refuse a generator that is one of the candidates (same normalised base_url and model)."""
    problem = _independence_problem(generator, candidates)
    if problem:
        raise ConfigError(problem)


def load_generate_config(
    source: str | Path | dict[str, Any], overrides: dict[str, Any] | None = None
) -> GenerateConfig:
    """Read, merge overrides into, and validate a generate config; errors are ConfigError lines."""
    config, base_dir = load_yaml_model(source, GenerateConfig, overrides)
    return _resolve_paths(config, base_dir)


def _resolve_paths(config: GenerateConfig, base_dir: Path) -> GenerateConfig:
    """Local files are found next to the config first, then from the working directory."""
    updates: dict[str, Any] = {}
    docs = config.documents
    if docs is not None and docs.path and (found := existing_path(docs.path, base_dir)):
        updates["documents"] = docs.model_copy(update={"path": found})
    if docs is not None and docs.dataset and (found := existing_path(docs.dataset.path, base_dir)):
        dataset = docs.dataset.model_copy(update={"path": found})
        updates["documents"] = docs.model_copy(update={"dataset": dataset})
    if config.seeds is not None and (found := existing_path(config.seeds.path, base_dir)):
        updates["seeds"] = config.seeds.model_copy(update={"path": found})
    if config.env_file and (found := existing_path(config.env_file, base_dir)):
        updates["env_file"] = found
    return config.model_copy(update=updates) if updates else config


# ---------------------------------------------------------------------------------------------
# Sources and the request plan


@dataclass(frozen=True)
class Chunk:
    source: str
    index: int
    text: str


@dataclass(frozen=True)
class PlanEntry:
    """What one request asks about: a pure function of the seed, the sources and ``index``."""

    index: int
    angle: str
    chunk: Chunk | None = None
    topic: str | None = None
    seeds: tuple[QAItem, ...] = ()


_TOKEN = re.compile(f"[{_CJK}]|[^\\s{_CJK}]+")


def chunk_text(text: str, chunk_words: int, overlap_words: int) -> list[str]:
    """Windows of ``chunk_words`` words overlapping by ``overlap_words``, cut from the original.

    Words follow raq's word rule (each CJK character is one word), and each chunk is a slice of
    the original text, so its spacing and line breaks survive.
    """
    spans = [m.span() for m in _TOKEN.finditer(text)]
    step = chunk_words - overlap_words
    chunks = []
    for start in range(0, len(spans), step):
        end = min(start + chunk_words, len(spans))
        chunks.append(text[spans[start][0] : spans[end - 1][1]])
        if end == len(spans):
            break
    return chunks


def load_chunks(config: DocumentsConfig, seed: int) -> list[Chunk]:
    """Every chunk of every document, in a stable order (sorted files, then row order)."""
    dataset = config.source_dataset()
    texts = _dataset_contexts(dataset, seed) if dataset else _text_files(Path(config.path or ""))
    chunks = [
        Chunk(source, i, piece)
        for source, text in texts
        for i, piece in enumerate(chunk_text(text, config.chunk_words, config.overlap_words))
    ]
    if not chunks:
        where = dataset.path if dataset else config.path
        raise DatasetError(f"documents '{where}': no text to write questions about")
    return chunks


def _text_files(path: Path) -> list[tuple[str, str]]:
    if path.is_file():
        return [(path.name, path.read_text(encoding="utf-8"))]
    if not path.is_dir():
        raise DatasetError(f"documents path not found: {path}")
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES)
    if not files:
        raise DatasetError(f"documents folder {path} holds no .txt or .md files")
    return [(p.relative_to(path).as_posix(), p.read_text(encoding="utf-8")) for p in files]


def _dataset_contexts(config: DatasetConfig, seed: int) -> list[tuple[str, str]]:
    """Distinct passages of a dataset's context column (SQuAD repeats one per question)."""
    if not config.fields.context:
        raise DatasetError(f"dataset '{config.path}': fields.context must name the passage column")
    seen: set[str] = set()
    out = []
    for row_index, row in load_rows(config, seed):
        text = lookup_field(row, config.fields.context, row_index, config.path, required=True)
        text = str(text or "").strip()
        if text and text not in seen:
            seen.add(text)
            raw_id = (
                lookup_field(row, config.fields.id, row_index, config.path)
                if config.fields.id
                else None
            )
            name = raw_id if raw_id not in (None, "") else f"row-{row_index}"
            out.append((f"{_source_label(config.path)}#{name}", text))
    return out


def _source_label(path: str) -> str:
    """A dataset's name as prompts and provenance show it: a local file by its name only, so
    the prompt (and with it the cache key) does not change when the project moves."""
    local = not path.startswith(BUILTIN_PREFIX) and Path(path).exists()
    return Path(path).name if local else path


def _rng(seed: int, *parts: object) -> random.Random:
    return random.Random(":".join(["raq-generate", str(seed), *map(str, parts)]))


def build_plan(
    config: GenerateConfig,
    count: int,
    chunks: list[Chunk] | None = None,
    seeds: list[QAItem] | None = None,
) -> list[PlanEntry]:
    """The first ``count`` requests; entry i never depends on count, so plans share prefixes."""
    topics: list[str | None] = list(config.topics or []) or [None]
    orders: dict[int, list[int]] = {}

    def pick(i: int, size: int) -> int:
        """Each pass over the chunks or topics is a fresh seeded shuffle."""
        cycle, position = divmod(i, size)
        if cycle not in orders:
            orders[cycle] = list(range(size))
            _rng(config.seed, "order", cycle).shuffle(orders[cycle])
        return orders[cycle][position]

    plan = []
    for i in range(count):
        angle = _rng(config.seed, "angle", i).choice(ANGLES)
        if config.mode == "documents":
            assert chunks
            plan.append(PlanEntry(i, angle, chunk=chunks[pick(i, len(chunks))]))
        elif config.mode == "topics":
            plan.append(PlanEntry(i, angle, topic=topics[pick(i, len(topics))]))
        else:
            assert seeds and config.seeds
            k = min(config.seeds.per_request, len(seeds))
            plan.append(
                PlanEntry(i, angle, seeds=tuple(_rng(config.seed, "seeds", i).sample(seeds, k)))
            )
    return plan


# ---------------------------------------------------------------------------------------------
# Prompts and structured output


def _reply_shape(with_context: bool) -> str:
    extra = ', "context": "..."' if with_context else ""
    return f'Reply with JSON only: {{"items": [{{"question": "...", "answer": "..."{extra}}}]}}'


def _rules(config: GenerateConfig, entry: PlanEntry) -> list[str]:
    rules = [
        'Questions must be self-contained (name what they ask about; never say "the passage" '
        'or "the text") and ask about different facts; an answer never repeats its question.',
        f"Prefer questions about {entry.angle}.",
    ]
    if config.instructions:
        rules.append(config.instructions.strip())
    return [f"- {rule}" for rule in rules]


def build_prompt(config: GenerateConfig, entry: PlanEntry, with_context: bool) -> str:
    """The user message for one request."""
    k = config.per_request
    if entry.chunk is not None:
        answer_rule = (
            "Each answer is a short span copied word for word from the passage (usually 1 to 5 "
            "words)."
            if config.extractive
            else "Each answer is short (a few words) and fully supported by the passage."
        )
        head = [
            f"Write {k} question-answer pairs for a reading-comprehension test on the "
            "passage below.",
            f"- {answer_rule}",
        ]
        tail = [f'<passage source="{entry.chunk.source}">', entry.chunk.text, "</passage>"]
    elif config.mode == "topics":
        about = entry.topic or config.description or ""
        head = [
            f"Write {k} closed-book quiz question-answer pairs about: {about}.",
            "- Each question has one short, unambiguous, checkable answer (usually 1 to 5 "
            "words) that experts agree on without any document.",
        ]
        if entry.topic and config.description:
            head.insert(1, f"The dataset as a whole: {config.description}")
        tail = []
    else:
        examples = [
            {"question": s.question, "answer": s.answers[0]}
            | ({"context": s.context} if s.context else {})
            for s in entry.seeds
        ]
        head = [
            "Below are example items from a question-answering dataset, as JSON. Write "
            f"{k} new items of the same kind (style, difficulty, language, answer format) about "
            "different facts. Do not copy or paraphrase the examples.",
        ]
        if with_context:
            head.append(
                '- Each new item has its own "context" passage, written like the examples\' '
                "contexts, that contains its answer word for word."
            )
        tail = ["Examples:", json.dumps(examples, ensure_ascii=False, indent=1)]
    return "\n".join([*head, *_rules(config, entry), _reply_shape(with_context), "", *tail])


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


# ---------------------------------------------------------------------------------------------
# Asking


@dataclass
class _Outcome:
    entry: PlanEntry
    items: list[dict[str, Any]] = field(default_factory=list)
    mode: str | None = None
    error: str | None = None  # the request failed
    invalid: str | None = None  # every ask's reply was unusable


class _Asker:
    """Asks the generator for one plan entry's items through the shared StructuredAsker."""

    def __init__(
        self, client: ChatClient, endpoint: Endpoint, config: GenerateConfig, with_context: bool
    ) -> None:
        self.client = client
        self.endpoint = endpoint
        self.config = config
        self.with_context = with_context
        forced = None if config.structured_output == "auto" else config.structured_output
        self.structured = StructuredAsker(forced=forced)

    @property
    def mode(self) -> str | None:
        return self.structured.mode

    async def ask(self, entry: PlanEntry) -> _Outcome:
        messages = []
        if self.config.generator.system:
            messages.append({"role": "system", "content": self.config.generator.system})
        prompt = build_prompt(self.config, entry, self.with_context)
        messages.append({"role": "user", "content": prompt})
        asked = await self.structured.ask(
            self.client,
            self.endpoint,
            messages,
            params={"temperature": DEFAULT_TEMPERATURE, **self.config.generator.params},
            fields=lambda mode: items_fields(mode, self.with_context, self.config.per_request),
            parse=parse_items,
            reask=lambda reason: (
                f"That reply is not usable ({reason}). " + _reply_shape(self.with_context)
            ),
            max_reasks=self.config.max_reasks,
            salt=f"raq-generate:{entry.index}",
        )
        if asked.value is not None:
            return _Outcome(entry, asked.value, mode=asked.mode)
        if asked.invalid:
            return _Outcome(entry, invalid=asked.error)
        return _Outcome(entry, mode=asked.mode, error=asked.error)


# ---------------------------------------------------------------------------------------------
# Validation and deduplication


def _text(value: Any) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return str(value)
    return value.strip() if isinstance(value, str) else None


def occurs_in(answer: str, passage: str) -> bool:
    """Whether the answer's normalised tokens occur as a contiguous run in the passage's."""
    needle = " ".join(answer_tokens(answer))
    return bool(needle) and f" {needle} " in f" {' '.join(answer_tokens(passage))} "


def check_item(
    raw: dict[str, Any], entry: PlanEntry, *, extractive: bool, with_context: bool
) -> tuple[str, str, str | None] | str:
    """(question, answer, context) for a valid item, else the reason it is dropped."""
    question, answer = _text(raw.get("question")), _text(raw.get("answer"))
    if question is None or answer is None:
        return "malformed_item"
    if not normalize_answer(question):
        return "empty_question"
    if not normalize_answer(answer):
        return "empty_answer"
    if occurs_in(question, answer):
        return "answer_copies_question"
    if entry.chunk is not None:
        if extractive and not occurs_in(answer, entry.chunk.text):
            return "answer_not_in_chunk"
        return question, answer, entry.chunk.text
    if not with_context:
        return question, answer, None
    context = _text(raw.get("context"))
    if not context:
        return "missing_context"
    if extractive and not occurs_in(answer, context):
        return "answer_not_in_context"
    return question, answer, context


class Deduplicator:
    """Finds questions already seen: exact, or near-duplicate by token-set Jaccard (not MinHash).

    Exact: equal ``normalize_answer`` text (case, punctuation, articles and spacing ignored).
    Near: Jaccard similarity ≥ ``threshold`` (0.8) of the sets of ``answer_tokens`` (the same
    normalisation; each CJK character one token). Comparisons are exact, not sampled: an inverted
    index over each set's prefix under a fixed token order (prefix filtering) proposes the only
    sets that can reach the threshold, and each proposal is checked exactly.
    """

    def __init__(self, threshold: float = NEAR_DUPLICATE_JACCARD) -> None:
        self.threshold = threshold
        self._exact: dict[str, str] = {}
        self._sets: list[tuple[frozenset[str], str]] = []
        self._index: defaultdict[str, list[int]] = defaultdict(list)

    def _prefix(self, tokens: frozenset[str]) -> list[str]:
        ordered = sorted(tokens, key=lambda t: (zlib.crc32(t.encode()), t))
        return ordered[: len(ordered) - math.ceil(self.threshold * len(ordered)) + 1]

    def find(self, question: str) -> tuple[str, str] | None:
        """("exact" | "near", label of the earlier question), or None for a new question."""
        key = normalize_answer(question)
        if key in self._exact:
            return "exact", self._exact[key]
        tokens = frozenset(answer_tokens(question))
        candidates = {j for token in self._prefix(tokens) for j in self._index.get(token, ())}
        for j in sorted(candidates):
            other, label = self._sets[j]
            common = len(tokens & other)
            if common / (len(tokens) + len(other) - common) >= self.threshold:
                return "near", label
        return None

    def add(self, question: str, label: str) -> None:
        self._exact.setdefault(normalize_answer(question), label)
        tokens = frozenset(answer_tokens(question))
        if tokens:
            for token in self._prefix(tokens):
                self._index[token].append(len(self._sets))
            self._sets.append((tokens, label))


# ---------------------------------------------------------------------------------------------
# Collecting, reporting, writing


@dataclass(frozen=True)
class GenerationReport:
    """What a generation did, in numbers; ``line()`` is the summary the CLI prints."""

    generated: int
    rejected: dict[str, int]
    deduplicated: int
    requests: int  # HTTP requests sent (retries and refused structured-output modes included)
    cache_hits: int
    target: int = 0
    near_duplicates: int = 0
    failed_requests: int = 0
    planned_requests: int = 0  # the budget: ceil(n / per_request) × 3
    asked: int = 0  # plan entries used
    stop_reason: str = ""  # "reached n", "plan exhausted", "generator disabled"
    structured_mode: str | None = None
    output: str | None = None

    def line(self) -> str:
        rejected = sum(self.rejected.values())
        reasons = ", ".join(
            f"{k} {v}" for k, v in sorted(self.rejected.items(), key=lambda kv: -kv[1])
        )
        parts = [
            f"generated {self.generated}/{self.target} items ({self.stop_reason})",
            f"{self.asked} of at most {self.planned_requests} planned requests "
            f"({self.requests} sent, {self.cache_hits} from cache, {self.failed_requests} failed)",
            f"rejected {rejected}" + (f" ({reasons})" if reasons else ""),
            f"{self.deduplicated} duplicates ({self.near_duplicates} near)",
        ]
        if self.structured_mode:
            parts.append(f"structured output: {self.structured_mode}")
        return " · ".join(parts)


class _Collector:
    """Validates, deduplicates and records results in plan order; appends each to .partial."""

    def __init__(
        self,
        config: GenerateConfig,
        target: int,
        partial: IO[str],
        seeds: list[QAItem],
        with_context: bool,
        progress: Progress,
    ) -> None:
        self.config = config
        self.target = target
        self.partial = partial
        self.with_context = with_context
        self.progress = progress
        self.records: list[dict[str, Any]] = []
        self.rejected: Counter[str] = Counter()
        self.duplicates: Counter[str] = Counter()
        self.asked = self.failed = 0
        self.last_error = ""
        self.dedup = Deduplicator()
        for item in seeds:
            self.dedup.add(item.question, f"seed {item.id}")

    @property
    def full(self) -> bool:
        return len(self.records) >= self.target

    def commit(self, outcome: _Outcome) -> None:
        self.asked += 1
        if outcome.error is not None:
            self.failed += 1
            self.last_error = outcome.error
            return
        if outcome.invalid is not None:
            self.rejected["unusable_response"] += 1
            return
        for raw in outcome.items:
            if self.full:
                return  # items past n are not needed; their response stays cached
            self._commit_item(raw, outcome)

    def _commit_item(self, raw: dict[str, Any], outcome: _Outcome) -> None:
        checked = check_item(
            raw, outcome.entry, extractive=self.config.extractive, with_context=self.with_context
        )
        if isinstance(checked, str):
            self.rejected[checked] += 1
            return
        question, answer, context = checked
        duplicate = self.dedup.find(question)
        if duplicate is not None:
            self.duplicates[duplicate[0]] += 1
            return
        record = self._record(question, answer, context, outcome)
        self.dedup.add(question, record["id"])
        self.records.append(record)
        self.partial.write(json.dumps(record, ensure_ascii=False) + "\n")
        self.partial.flush()
        self.progress.advance("generate")

    def _record(
        self, question: str, answer: str, context: str | None, outcome: _Outcome
    ) -> dict[str, Any]:
        g, entry = self.config.generator, outcome.entry
        chunk = {"source": entry.chunk.source, "index": entry.chunk.index} if entry.chunk else None
        return {
            "id": f"{self.config.name}-{len(self.records):05d}",
            "question": question,
            "context": context,
            "answers": {"text": [answer]},  # SQuAD-style: raq's default field map reads it
            "provenance": {
                "generator": {"name": g.name, "model": g.model, "base_url": g.base_url},
                "mode": self.config.mode,
                "seeds": [s.id for s in entry.seeds],
                "chunk": chunk,
                "topic": entry.topic,
                "request": entry.index,
                "structured_output": outcome.mode,
            },
        }


def _wave_size(needed: int, accepted: int, asked: int, per_request: int, left: int) -> int:
    """Requests for the next wave, from the yield so far (a function of committed results only)."""
    rate = accepted / asked if asked else per_request
    return max(1, min(left, math.ceil(needed / max(rate, 0.5))))


def _write_output(out: Path, records: list[dict[str, Any]], fmt: str) -> None:
    """Write to a temporary file, then rename: readers never see a half-written dataset."""
    out.parent.mkdir(parents=True, exist_ok=True)

    tmp = temporary_beside(out)
    if fmt == "parquet":
        pandas = _parquet_support()
        pandas.DataFrame.from_records(records).to_parquet(tmp, index=False)
    else:
        with tmp.open("w", encoding="utf-8") as f:
            for record in records:
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
    os.replace(tmp, out)


def _parquet_support() -> Any:
    try:
        import pandas
        import pyarrow  # noqa: F401
    except ImportError:
        raise ConfigError(
            "writing parquet needs pandas and pyarrow (pip install pandas pyarrow); or write jsonl"
        ) from None
    return pandas


def _check_output(out: Path, fmt: str) -> None:
    if fmt not in ("jsonl", "parquet"):
        raise ConfigError(f"unknown output format '{fmt}' (jsonl or parquet)")
    if out.suffix.lower() != f".{fmt}":
        raise ConfigError(
            f"{out}: a {fmt} dataset must end in .{fmt} (raq's dataset loader picks the format "
            "by suffix)"
        )
    if fmt == "parquet":
        _parquet_support()


# ---------------------------------------------------------------------------------------------
# Entry points


async def generate_async(
    config: GenerateConfig | str | Path,
    out: str | Path,
    *,
    n: int | None = None,
    fmt: Literal["jsonl", "parquet"] = "jsonl",
    progress: Progress | bool | None = None,
    refresh: bool = False,
    use_cache: bool | None = None,
    cache_path: str | Path | None = None,
    retry_base_s: float | None = None,
) -> GenerationReport:
    """Generate until ``n`` items are accepted or the plan is spent; write ``out`` atomically."""
    if not isinstance(config, GenerateConfig):
        config = load_generate_config(config)
    out = Path(out)
    _check_output(out, fmt)
    check_independence(config.generator, config.forbid_models)
    load_env_file(config.env_file)
    endpoint = endpoint_for(config.generator, "generator", config.env_file)
    target = n or config.n
    budget = math.ceil(target / config.per_request) * 3
    seeds = load_items(config.seeds.as_dataset(), config.seed) if config.seeds else []
    chunks = load_chunks(config.documents, config.seed) if config.mode == "documents" else None
    assert config.documents or config.mode != "documents"
    with_context = config.mode == "seeds" and any(s.context for s in seeds)
    plan = build_plan(config, budget, chunks=chunks, seeds=seeds)
    reporter = make_progress(progress)
    cache = open_cache(config.cache, use_cache, cache_path)
    if retry_base_s is not None:  # an override for tests and scripts
        config = config.model_copy(update={"retry_base_s": retry_base_s})
    client = ChatClient.from_settings(config, cache=cache, refresh=refresh)
    client.on_event = lambda kind, message: reporter.note(message)
    partial_path = Path(f"{out}.partial")
    partial_path.parent.mkdir(parents=True, exist_ok=True)
    reporter.start("generate", target)
    try:
        with partial_path.open("w", encoding="utf-8") as partial:
            collector = _Collector(config, target, partial, seeds, with_context, reporter)
            async with contextlib.AsyncExitStack() as local, client:
                if endpoint.base_url == LOCAL_BASE_URL:  # the embedded server (raq[local])
                    server = await local.enter_async_context(serving(reporter.note))
                    endpoint = dataclasses.replace(endpoint, base_url=server.base_url)
                asker = _Asker(client, endpoint, config, with_context)
                stop = await _run_plan(plan, asker, collector, client)
    finally:
        reporter.stop()
        if cache is not None:
            cache.close()
    counters = client.counters().get(endpoint.name)
    report = GenerationReport(
        generated=len(collector.records),
        rejected=dict(collector.rejected),
        deduplicated=sum(collector.duplicates.values()),
        requests=counters.requests if counters else 0,
        cache_hits=counters.cache_hits if counters else 0,
        target=target,
        near_duplicates=collector.duplicates["near"],
        failed_requests=collector.failed,
        planned_requests=budget,
        asked=collector.asked,
        stop_reason=stop,
        structured_mode=asker.mode,
        output=str(out),
    )
    if not collector.records:
        partial_path.unlink(missing_ok=True)
        last = f"; last error: {collector.last_error}" if collector.last_error else ""
        raise DatasetError(f"generation produced no usable items: {report.line()}{last}")
    _write_output(out, collector.records, fmt)
    partial_path.unlink(missing_ok=True)
    return report


async def _run_plan(
    plan: list[PlanEntry], asker: _Asker, collector: _Collector, client: ChatClient
) -> str:
    """Send the plan in waves, committing in plan order; say why it stopped."""
    next_index = 0
    while not collector.full:
        if next_index >= len(plan):
            return "plan exhausted"
        if client.disabled():
            return "generator disabled"
        size = _wave_size(
            collector.target - len(collector.records),
            len(collector.records),
            collector.asked,
            asker.config.per_request,
            len(plan) - next_index,
        )
        wave = plan[next_index : next_index + size]
        next_index += size
        tasks = [asyncio.create_task(asker.ask(entry)) for entry in wave]
        try:
            for task in tasks:
                collector.commit(await task)
        finally:
            for task in tasks:
                task.cancel()  # only unfinished ones: an interrupt or an error
    return "reached n"


def generate(config: GenerateConfig | str | Path, out: str | Path, **kw: Any) -> GenerationReport:
    """Synchronous ``generate_async`` for scripts and the CLI."""
    return asyncio.run(generate_async(config, out, **kw))
