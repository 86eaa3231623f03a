"""Config loading: defaults, overrides, and one clear line per mistake."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from raq.config import load_config
from raq.core.errors import ConfigError

BASE = """\
name: t
dataset:
  path: builtin:demo
candidates:
  - name: a
    base_url: http://127.0.0.1:9/v1
    model: m-a
  - name: b
    base_url: http://127.0.0.1:9/v1
    model: m-b
judges:
  - name: j
    base_url: http://127.0.0.1:9/v1
    model: m-judge
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_defaults_follow_the_article(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, BASE))
    assert config.repeats == 3
    assert config.alpha == 0.05
    assert config.p_adjust == "holm"
    assert config.dataset.split == "train"
    assert "{context}" in config.prompts.answer
    assert config.judges[0].kind == "llm"


def test_unknown_key_suggests_the_nearest_and_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, BASE + "repaets: 5\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(f"{path}:15: repaets: unknown key")
    assert "did you mean 'repeats'" in message


def test_nested_unknown_key_names_the_path(tmp_path: Path) -> None:
    text = BASE.replace("    model: m-b\n", "    model: m-b\n    temprature: 0.1\n")
    with pytest.raises(
        ConfigError,
        match=r":11: candidates\[1\]\.temprature: unknown key; generation settings go under params",
    ):
        load_config(write(tmp_path, text))


def test_wrong_type_names_key_and_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r":15: repeats: Input should be a valid integer"):
        load_config(write(tmp_path, BASE + "repeats: many\n"))


def test_missing_required_key(tmp_path: Path) -> None:
    text = BASE.replace("    model: m-a\n", "")
    with pytest.raises(ConfigError, match=r"candidates\[0\]: model is required"):
        load_config(write(tmp_path, text))


def test_judge_that_is_a_candidate_is_refused_unless_allowed(tmp_path: Path) -> None:
    text = BASE.replace("model: m-judge", "model: m-a")
    with pytest.raises(ConfigError, match="may not judge itself"):
        load_config(write(tmp_path, text))
    config = load_config(write(tmp_path, text + "allow_self_judge: true\n"))
    assert config.self_judging == ["j"]


def test_reference_judge_needs_no_endpoint(tmp_path: Path) -> None:
    text = BASE.replace(
        "  - name: j\n    base_url: http://127.0.0.1:9/v1\n    model: m-judge\n",
        "  - name: f1\n    kind: reference\n",
    )
    assert load_config(write(tmp_path, text)).judges[0].kind == "reference"


def test_bad_yaml_is_one_line_with_position(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"c\.yaml:\d+: not valid YAML"):
        load_config(write(tmp_path, "name: [unclosed\n"))


def test_unknown_p_adjust_suggests(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="did you mean 'holm'"):
        load_config(write(tmp_path, BASE + "p_adjust: hol\n"))


def test_overrides_apply(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, BASE), {"dataset.limit": 7, "repeats": 2})
    assert config.dataset.limit == 7
    assert config.repeats == 2


def test_reserved_params_are_refused(tmp_path: Path) -> None:
    text = BASE.replace("    model: m-a\n", "    model: m-a\n    params: {stream: false}\n")
    with pytest.raises(ConfigError, match="stream is set by raq itself"):
        load_config(write(tmp_path, text))


def test_shipped_configs_are_valid() -> None:
    from raq.stages.generate import load_generate_config

    root = Path(__file__).resolve().parents[1] / "configs"
    for path in sorted(root.glob("*.yaml")):
        if path.name.startswith("generate"):
            load_generate_config(path)
        else:
            load_config(path)
