"""Reading a run config: YAML with line numbers, dotted overrides, friendly one-line errors.

Every error names the file, the line, the key path and what is wrong, in one line, because
CI jobs and people both write these files by hand.
"""

from __future__ import annotations

import copy
import difflib
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from raq.config.models import GENERATION_PARAMS, RunConfig
from raq.core.errors import ConfigError

M = TypeVar("M", bound=BaseModel)


def load_yaml_model(
    source: str | Path | dict[str, Any], model: type[M], overrides: dict[str, Any] | None = None
) -> tuple[M, Path]:
    """Read YAML (or a dict), apply dotted overrides, validate; ConfigError lines on mistakes.

    Returns the model and the directory relative paths in it are resolved against.
    """
    if isinstance(source, dict):
        data, lines, label, base_dir = copy.deepcopy(source), {}, "<config>", Path.cwd()
    else:
        path = Path(source)
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found")
        data, lines = _parse_yaml(read_text(path, "config"), path)
        label, base_dir = str(path), path.parent
    for dotted, value in (overrides or {}).items():
        if value is not None:
            _set_dotted(data, dotted, value)
    try:
        return model.model_validate(data), base_dir
    except ValidationError as exc:
        raise ConfigError(describe_error(exc, label, lines, model)) from None


def load_config(
    source: str | Path | dict[str, Any], overrides: dict[str, Any] | None = None
) -> RunConfig:
    """Read, merge overrides into, and validate a run config; errors are ConfigError lines."""
    config, base_dir = load_yaml_model(source, RunConfig, overrides)
    return _resolve_paths(config, base_dir)


def _parse_yaml(text: str, path: Path) -> tuple[dict[str, Any], dict[tuple, int]]:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}{where}: not valid YAML: {problem}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys (key: value lines)")
    lines: dict[tuple, int] = {}
    _index_lines(node, (), lines, path)
    return data, lines


def _index_lines(
    node: yaml.Node | None, path: tuple, out: dict[tuple, int], file: Path | None = None
) -> None:
    """Remember the line of every key and item so validation errors can point at it; a key
    given twice in one mapping is an error (YAML loaders silently keep the last one)."""
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key_path = (*path, key_node.value)
            line = key_node.start_mark.line + 1
            if key_path in out and file is not None:
                raise ConfigError(
                    f"{file}:{line}: {_dotted(key_path)}: duplicate key (first given on line "
                    f"{out[key_path]})"
                )
            out[key_path] = line
            _index_lines(value_node, key_path, out, file)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            out[(*path, i)] = item.start_mark.line + 1
            _index_lines(item, (*path, i), out, file)


def describe_error(
    exc: ValidationError, label: str, lines: dict[tuple, int], root: type[BaseModel]
) -> str:
    """One line: file, line, key path, problem (and the nearest key for a misspelt one)."""
    error = exc.errors()[0]
    loc = tuple(part for part in error["loc"] if not _is_union_tag(part))
    message = error["msg"].removeprefix("Value error, ")
    head, sep, rest = message.partition(": ")
    if not loc and sep and head in root.model_fields:  # a model rule that names its key
        loc, message = (head,), rest
    key_path = _dotted(loc)
    line = next((lines[loc[:i]] for i in range(len(loc), 0, -1) if loc[:i] in lines), None)
    where = f"{label}:{line}" if line else label
    if error["type"] == "extra_forbidden":
        known = _known_keys(loc[:-1], root)
        close = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.6)
        if close:
            hint = f"; did you mean '{close[0]}'?"
        elif "params" in known and difflib.get_close_matches(str(loc[-1]), GENERATION_PARAMS):
            hint = "; generation settings go under params (params: {temperature: 0.1, ...})"
        else:
            hint = f" (known: {', '.join(known)})"
        return f"{where}: {key_path}: unknown key{hint}"
    if error["type"] == "missing":
        message = "required key is missing"
    return f"{where}: {key_path or '(top level)'}: {message}"


def _is_union_tag(part: Any) -> bool:
    return isinstance(part, str) and part.startswith(("function-", "tagged-union"))


def _dotted(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _known_keys(loc: tuple, root: type[BaseModel]) -> list[str]:
    """The field names allowed at a location, found by walking the model classes."""
    model: type[BaseModel] = root
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(str(part))
        if field is None:
            return []
        inner = _model_in(field.annotation)
        if inner is None:
            return []
        model = inner
    return list(model.model_fields)


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    node = data
    for key in parents:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ConfigError(f"cannot set {dotted}: {key} is not a mapping")
    node[last] = value


def _resolve_paths(config: RunConfig, base_dir: Path) -> RunConfig:
    """Local files are found next to the config first, then from the working directory."""
    updates: dict[str, Any] = {}
    dataset_updates: dict[str, Any] = {}
    dataset_path = existing_path(config.dataset.path, base_dir)
    if dataset_path is not None:
        dataset_updates["path"] = dataset_path
    elif config.dataset.generate and not Path(config.dataset.path).is_absolute():
        dataset_updates["path"] = str((base_dir / config.dataset.path).resolve())
    if config.dataset.generate:
        generate_path = existing_path(config.dataset.generate, base_dir)
        if generate_path is None:
            raise ConfigError(f"dataset.generate: {config.dataset.generate}: file not found")
        dataset_updates["generate"] = generate_path
    if dataset_updates:
        updates["dataset"] = config.dataset.model_copy(update=dataset_updates)
    if config.env_file:
        env_path = existing_path(config.env_file, base_dir)
        if env_path is not None:
            updates["env_file"] = env_path
    return config.model_copy(update=updates) if updates else config


def existing_path(value: str, base_dir: Path) -> str | None:
    """A local path found next to the config first, then from the working directory."""
    if ":" in value.split("/")[0] or Path(value).is_absolute():
        return None
    for candidate in (base_dir / value, Path.cwd() / value):
        if candidate.exists():
            return str(candidate.resolve())
    return None


def config_to_yaml(config: RunConfig) -> str:
    """The resolved config as YAML; it never holds secrets (only env var names)."""
    data = config.model_dump(mode="json", exclude_none=True)
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def demo_config_path() -> Path:
    """configs/demo.yaml when run from a checkout, else the copy shipped in the package."""
    local = Path("configs") / "demo.yaml"
    if local.is_file():
        return local
    from importlib import resources

    return Path(str(resources.files("raq") / "data" / "demo.yaml"))


def read_text(path: Path, what: str) -> str:
    """A text file raq reads (config, env file) as UTF-8; anything else is one ConfigError line
    that names the file and the offset, never its content (an env file holds keys)."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: the {what} is not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset "
            f"{exc.start}); save it as UTF-8"
        ) from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the {what} ({exc.strerror or exc})") from None
