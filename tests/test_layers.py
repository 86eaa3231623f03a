"""The house stays clean: every module imports only from its own layer or the layers below, the
imports form no circle, and a deferred import is one of the few kept for start-up speed.

The layers, bottom to top, are the pipeline a newcomer reads about in the README (see its
"Development" section). A new module must be placed in one; a new package needs a line here.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

# Bottom to top. A module may import its own layer and every layer below it, never above.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("core: records, errors, metrics, escaping, redaction, progress", ("raq.core",)),
    ("configuration", ("raq.config",)),
    ("request path, store and dataset", ("raq.endpoints", "raq.store", "raq.dataset")),
    ("stages: answers, judgments, generation", ("raq.stages",)),
    ("analysis: statistics, diagnostics, controls", ("raq.stats",)),
    ("the result", ("raq.result",)),
    ("renderings: terminal, markdown, html, plots, viewer", ("raq.report", "raq.view")),
    ("orchestration", ("raq.pipeline",)),
    ("interface: the CLI and raq/__init__.py", ("raq.cli", "raq.__main__", "raq")),
]
# Test helpers stand apart: the fake server imports nothing of raq's, so it can serve the
# benchmark from a child process without loading the harness it measures.
APART = ("raq.testing",)
# Imports inside functions that are kept on purpose, each for start-up speed (never to dodge a
# circle: the graph below includes them and has none).
DEFERRED_ALLOWED = {
    "raq": "the public API loads on first use, so `import raq` is instant",
    "raq.cli": "the command's imports run after it pauses the garbage collector for them",
    "raq.cli.app": "each command imports what it needs, so `raq --help` answers at once",
    "raq.pipeline.questions": "a run that generates its dataset is rare: others skip its modules",
    "raq.result": "RunResult loads on first use, so the gate's limits import alone at start-up",
    "raq.pipeline.run": "finalize (pandas, scipy, matplotlib) loads after the requests start",
    "raq.pipeline.outputs_ahead": "the outputs' modules load in a thread during the requests",
    "raq.pipeline.records_ahead": "its pass starts once its modules, the first of those, load",
    "raq.stats": "its names load on first use: the record pass needs only the tallies, not scipy",
    "raq.testing": "`python -m raq.testing.fake_server` must not import the module twice",
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> list[tuple[str, bool, int]]:
    """(imported raq module, deferred?, line) for every import of raq in the file, those under
    ``if TYPE_CHECKING:`` and inside functions included."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: list[tuple[str, bool, int]] = []
    for node in ast.walk(tree):
        deferred = getattr(node, "col_offset", 0) > 0
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "raq":  # from raq import x: x may be a module
                for alias in node.names:
                    found.append((f"raq.{alias.name}", deferred, node.lineno))
            elif node.module.startswith("raq."):
                found.append((node.module, deferred, node.lineno))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("raq"):
                    found.append((alias.name, deferred, node.lineno))
    return found


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted((SRC / "raq").rglob("*.py"))}


def _resolve(target: str, modules: dict[str, Path]) -> str | None:
    """The module an import loads (``raq.x.y`` may name a module or a name in ``raq.x``)."""
    while target and target not in modules:
        target = target.rpartition(".")[0]
    return target or None


def _layer(module: str) -> int | None:
    best: tuple[int, int] | None = None  # (prefix length, layer)
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            # "raq" is raq/__init__.py alone, not a prefix of every module
            matches = module == prefix or (prefix != "raq" and module.startswith(prefix + "."))
            if matches and (best is None or len(prefix) > best[0]):
                best = (len(prefix), index)
    return None if best is None else best[1]


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = {_resolve(t, modules) for t, _, _ in _imports(path)}
        graph[name] = {t for t in targets if t is not None and t != name}
    return graph


def test_every_module_has_a_layer() -> None:
    unplaced = [m for m in _modules() if _layer(m) is None and not m.startswith(APART)]
    assert not unplaced, f"place these modules in a layer of tests/test_layers.py: {unplaced}"


def _upward(modules: dict[str, Path]) -> list[str]:
    """Every import of ``modules`` that reaches a higher layer (or a test helper)."""
    upward = []
    for name, path in modules.items():
        if name.startswith(APART):
            continue
        own = _layer(name)
        assert own is not None, name
        for target, _, line in _imports(path):
            resolved = _resolve(target, modules)
            if resolved is None or resolved == name:
                continue
            theirs = _layer(resolved)
            if resolved.startswith(APART) or theirs is None:
                upward.append(f"{path}:{line}: {resolved} is a test helper")
            elif theirs > own:
                upward.append(
                    f"{path}:{line}: {name} ({LAYERS[own][0]}) imports "
                    f"{resolved} ({LAYERS[theirs][0]})"
                )
    return upward


def test_no_module_imports_a_higher_layer() -> None:
    upward = _upward(_modules())
    assert not upward, "imports that reach up a layer:\n" + "\n".join(upward)


def test_the_test_helpers_import_nothing_of_the_harness() -> None:
    modules = _modules()
    reached = [
        f"{name} imports {target}"
        for name, path in modules.items()
        if name.startswith(APART)
        for target, _, _ in _imports(path)
        if not (_resolve(target, modules) or "").startswith(APART)
    ]
    assert not reached, reached


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []
    counter = 0

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        nonlocal counter
        index[node] = low[node] = counter
        counter += 1
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return circles


def test_the_imports_form_no_circle() -> None:
    # Imports under TYPE_CHECKING and inside functions count: a deferred import that closes a
    # circle hides it at import time but not from a reader.
    circles = _circles(_graph())
    assert not circles, f"import circles: {circles}"


def test_deferred_imports_are_only_the_ones_kept_for_start_up() -> None:
    modules = _modules()
    unexpected = []
    for name, path in modules.items():
        text = path.read_text(encoding="utf-8")
        type_checking = _type_checking_lines(text)
        for target, deferred, line in _imports(path):
            if deferred and line not in type_checking and name not in DEFERRED_ALLOWED:
                unexpected.append(f"{path.relative_to(SRC)}:{line}: {target}")
    assert not unexpected, (
        "imports inside functions (move them to the top, or say in DEFERRED_ALLOWED why "
        "start-up needs them deferred):\n" + "\n".join(unexpected)
    )


def _type_checking_lines(text: str) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(ast.parse(text)):
        if (
            isinstance(node, ast.If)
            and isinstance(node.test, ast.Name)
            and node.test.id == "TYPE_CHECKING"
        ):
            for inner in node.body:
                lines.update(range(inner.lineno, (inner.end_lineno or inner.lineno) + 1))
    return lines


def test_the_checks_catch_an_upward_import_and_a_circle(tmp_path: Path) -> None:
    """The checks themselves: a core module importing the result layer is found, an import from
    a lower layer is not, and a circle of two modules is one circle."""
    probe = tmp_path / "probe.py"
    probe.write_text(
        "from raq.result.record import RunResult\nfrom raq.core.errors import RaqError\n"
    )
    lower = tmp_path / "lower.py"
    lower.write_text("from raq.core.errors import RaqError\n")
    modules = {
        "raq.core.probe": probe,
        "raq.result.record": lower,
        "raq.core.errors": lower,
    }
    found = _upward(modules)
    assert len(found) == 1 and "raq.core.probe" in found[0] and "raq.result.record" in found[0]
    assert _circles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]
    assert _circles({"a": {"b"}, "b": set()}) == []
    assert _layer("raq.somewhere_new") is None  # the fallback "raq" is raq/__init__.py only
