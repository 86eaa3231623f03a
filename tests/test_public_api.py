"""The public API stays where users import it from, whatever the layout inside raq."""

from __future__ import annotations

import inspect

import raq


def test_the_top_level_names_are_the_documented_ones() -> None:
    assert sorted(raq.__all__) == sorted(
        ["RunConfig", "RunResult", "__version__", "evaluate", "evaluate_async", "load_config"]
    )
    for name in raq.__all__:
        assert getattr(raq, name) is not None


def test_evaluate_takes_the_same_options() -> None:
    options = [
        "config", "output", "limit", "repeats", "refresh", "preflight", "use_cache",
        "cache_path", "progress", "shard",
    ]  # fmt: skip
    assert list(inspect.signature(raq.evaluate_async).parameters) == options
    assert list(inspect.signature(raq.evaluate).parameters) == ["config", "options"]


def test_config_and_result_types_import_from_their_packages() -> None:
    from raq.config import (
        CacheConfig,
        CandidateConfig,
        DatasetConfig,
        EndpointConfig,
        GateConfig,
        JudgeConfig,
        PromptsConfig,
        RunConfig,
        StatsConfig,
        load_config,
    )
    from raq.result import RunResult
    from raq.stats import StatsResult, analyse

    assert raq.RunConfig is RunConfig and raq.RunResult is RunResult
    assert raq.load_config is load_config
    assert all(
        inspect.isclass(t)
        for t in (CacheConfig, CandidateConfig, DatasetConfig, EndpointConfig, GateConfig)
    )
    assert all(inspect.isclass(t) for t in (JudgeConfig, PromptsConfig, StatsConfig, StatsResult))
    assert callable(analyse)
    assert set(RunConfig.model_fields) >= {"candidates", "judges", "dataset", "repeats", "stats"}
