"""What a generation is asked to do: the config models, loading them, the independence rule.

``GenerateConfig`` names the generator, one source (documents, topics or seeds) and the budget;
validation refuses a generator that is one of the models the data will test, so a model never
writes the questions it is later ranked on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from raq.config import (
    CacheConfig,
    DatasetConfig,
    EndpointConfig,
    StrictModel,
    existing_path,
    load_yaml_model,
)
from raq.core.errors import ConfigError
from raq.dataset import BUILTIN_PREFIX, LOCAL_BUILDERS

Mode = Literal["documents", "topics", "seeds"]


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
