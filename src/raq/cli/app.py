"""The ``raq`` command: a thin Typer layer over the library.

Heavy modules (pandas, datasets, scikit-posthocs, aiohttp) are imported inside the commands, so
``raq --help`` and ``raq --version`` answer at once. Every RaqError becomes one line on stderr
and exit code 2; a broken limit or failed gate exits 1; Ctrl-C exits 130.
"""

from __future__ import annotations

import asyncio
import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from raq import __version__
from raq.cli.leave import leave
from raq.core import collector
from raq.core.errors import RaqError
from raq.result.gate import MAX_FAILED, MIN_QUESTIONS  # light: json and dataclasses only

app = typer.Typer(
    name="raq",
    help="Relative Answer Quality: rank LLM answers with an independent judge and test "
    "which models really differ.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

F = TypeVar("F", bound=Callable[..., Any])


def _user_errors(command: F) -> F:
    """One line and exit 2 for errors a user can fix; 130 for Ctrl-C; never a traceback."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        collector.resume()  # the command line's imports are done (raq.cli.main paused it)
        try:
            return command(*args, **kwargs)
        except RaqError as exc:
            from raq.core.escape import one_line
            from raq.core.redact import CONFIGURED_KEYS

            typer.echo(f"raq: error: {one_line(CONFIGURED_KEYS(str(exc)))}", err=True)
            raise typer.Exit(getattr(exc, "exit_code", 2)) from None
        except FileNotFoundError as exc:
            from raq.core.escape import one_line

            typer.echo(f"raq: error: {one_line(str(exc.filename))}: no such file", err=True)
            raise typer.Exit(2) from None
        except OSError as exc:  # a read-only directory, a full disk, a file that is a folder
            from raq.core.escape import one_line

            where = f"{exc.filename}: " if exc.filename else ""
            typer.echo(f"raq: error: {one_line(where + (exc.strerror or str(exc)))}", err=True)
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"raq {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    pass


@app.command()
@_user_errors
def run(
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="Run config (YAML).")
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Run directory (default runs/<UTC time>-<name>)."),
    ] = None,
    resume: Annotated[
        Path | None, typer.Option("--resume", help="Continue the run stored in this directory.")
    ] = None,
    limit: Annotated[
        int | None, typer.Option(help="Questions to use (overrides dataset.limit).")
    ] = None,
    repeats: Annotated[int | None, typer.Option(help="Judge repeats per question.")] = None,
    refresh: Annotated[bool, typer.Option(help="Ignore cached responses and call again.")] = False,
    cache: Annotated[bool, typer.Option(help="Use the shared response cache.")] = True,
    preflight: Annotated[bool, typer.Option(help="Check every endpoint answers first.")] = True,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
    shard: Annotated[
        str | None,
        typer.Option(help="I/N: evaluate slice I (0-based) of N into its own run; see raq merge."),
    ] = None,
) -> None:
    """Ask every candidate, have the judges rank the answers, and test the differences."""
    with collector.paused():
        from raq.pipeline.run import evaluate

    if resume is not None:
        output = resume
        if config is None:
            config = _stored_config(resume)
    if config is None:
        raise RaqError("give --config FILE (or --resume RUN_DIR)")
    if output is None:  # named here so an interrupted run can say where it is
        from raq.config import load_config
        from raq.pipeline.run import default_run_dir

        output = default_run_dir(load_config(config))
    try:
        result = evaluate(
            config,
            output=output,
            limit=limit,
            repeats=repeats,
            refresh=refresh,
            preflight=preflight,
            use_cache=None if cache else False,
            progress=not quiet,
            shard=_parse_shard(shard),
        )
    except (KeyboardInterrupt, asyncio.CancelledError):
        where = output
        typer.echo(
            f"\nraq: interrupted; nothing stored is lost. Resume with: raq run --resume {where}",
            err=True,
        )
        raise typer.Exit(130) from None
    _print_and_exit(result)


def _print_and_exit(result: Any) -> None:
    """The result's tables; exit 1 when a limit broke or a whole candidate or judge (or
    everything) was lost, each named on one line of stderr."""
    from raq.core.escape import one_line
    from raq.core.outcome import lost_work
    from raq.report.terminal import print_result

    print_result(result)
    lost = lost_work(result.summary_json)
    for line in lost:
        typer.echo(f"raq: {one_line(line)}", err=True)
    if result.problems or lost:
        raise typer.Exit(1)


def _parse_shard(value: str | None) -> tuple[int, int] | None:
    if value is None:
        return None
    try:
        number, count = (int(part) for part in value.split("/"))
    except ValueError:
        raise RaqError(f"--shard takes I/N, e.g. 0/4, not {value!r}") from None
    if not 0 <= number < count:
        raise RaqError(f"--shard {value}: I must be 0 to N-1")
    return number, count


def _stored_config(run_dir: Path) -> Any:
    from raq.store import RunStore

    store = RunStore.open_existing(run_dir)
    try:
        stored = store.get_meta("config")
    finally:
        store.close()
    if stored is None:
        raise RaqError(f"{run_dir}: the run store holds no config to resume from")
    return stored


@app.command()
@_user_errors
def report(run_dir: Annotated[Path, typer.Argument(help="A run directory.")]) -> None:
    """Re-render a run's report files and terminal tables from its store."""
    from raq.pipeline.finalize import load_result
    from raq.report.terminal import print_result
    from raq.store import RunStore
    from raq.store.lock import RunLock

    RunStore.open_existing(run_dir).close()  # a clear line for a directory that is no run
    with RunLock(run_dir):  # it writes the run's files: never while a run writes them too
        result = load_result(run_dir)
    print_result(result)


@app.command()
@_user_errors
def stats(
    ranks_csv: Annotated[Path, typer.Argument(help="A ranks file in the ranks.csv format.")],
    p_adjust: Annotated[
        str, typer.Option(help="p-value adjustment (any scikit-posthocs method).")
    ] = "holm",
    alpha: Annotated[float, typer.Option(help="Significance level.")] = 0.05,
    test: Annotated[
        str,
        typer.Option(help="friedman (blocked, the default verdict), wilcoxon, or dunn (original)."),
    ] = "friedman",
    posthoc: Annotated[
        str, typer.Option(help="After friedman: conover, nemenyi or ztest.")
    ] = "conover",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for machines.")] = False,
) -> None:
    """Run the statistics on any ranks file (question_id,repeat,judge,candidate,rank,position);
    a question's repeats and judges are folded into one ranking first (the question is the
    unit)."""
    from raq.cli.stats_command import print_stats, read_ranks_csv, stats_json

    ranks = read_ranks_csv(ranks_csv)
    result = _analyse_cli(ranks, test=test, posthoc=posthoc, p_adjust=p_adjust, alpha=alpha)
    if as_json:
        typer.echo(json.dumps(stats_json(result), indent=2))
    else:
        print_stats(result)


def _analyse_cli(ranks: Any, **options: Any) -> Any:
    from raq.stats import analyse

    p_adjust = options.pop("p_adjust")
    try:
        return analyse(ranks, p_adjust=None if p_adjust.lower() == "none" else p_adjust, **options)
    except ValueError as exc:
        raise RaqError(str(exc)) from None


@app.command()
@_user_errors
def runs(
    directory: Annotated[Path, typer.Argument(help="Where runs live.")] = Path("runs"),
) -> None:
    """List the runs under a directory: name, date, candidates, questions, status."""
    from raq.cli.runs_list import print_runs

    print_runs(directory)


@app.command()
@_user_errors
def merge(
    run_dirs: Annotated[list[Path], typer.Argument(help="Shard run directories.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="The merged run directory.")],
) -> None:
    """Combine the shards of one config (raq run --shard I/N) into one run."""
    from raq.pipeline.merge import merge_runs

    _print_and_exit(merge_runs(run_dirs, output))


@app.command()
@_user_errors
def generate(
    config: Annotated[Path, typer.Option("--config", "-c", help="Generate config (YAML).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output .jsonl (or .parquet) file.")],
    n: Annotated[int | None, typer.Option(help="Items to generate (overrides n).")] = None,
    fmt: Annotated[str, typer.Option("--format", help="jsonl or parquet.")] = "jsonl",
    for_config: Annotated[
        Path | None,
        typer.Option(help="A run config that will use the data: its candidates may not generate."),
    ] = None,
    refresh: Annotated[bool, typer.Option(help="Ignore cached responses and call again.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Write a QA dataset with an independent LLM: from documents, topics, or seed examples."""
    from raq.config import load_config
    from raq.core.escape import one_line
    from raq.stages.generation.config import load_generate_config
    from raq.stages.generation.run import generate as run_generation

    if fmt not in ("jsonl", "parquet"):
        raise RaqError("--format takes jsonl or parquet")
    generate_config = load_generate_config(config)
    if for_config is not None:
        forbid = [*generate_config.forbid_models, *load_config(for_config).candidates]
        generate_config = generate_config.model_copy(update={"forbid_models": forbid})
    report = run_generation(generate_config, out, n=n, fmt=fmt, refresh=refresh, progress=not quiet)
    typer.echo(one_line(report.line()))


@app.command("gate")
@_user_errors
def gate_command(
    run_dir: Annotated[Path, typer.Argument(help="A finished run directory.")],
    baseline: Annotated[str, typer.Option(help="The candidate in production.")],
    candidate: Annotated[
        list[str] | None, typer.Option(help="Candidate(s) to check (default: all others).")
    ] = None,
    require: Annotated[str, typer.Option(help="not-worse or better.")] = "not-worse",
    alpha: Annotated[
        float | None, typer.Option(help="Significance level (default: the run's).")
    ] = None,
    margin: Annotated[
        float | None,
        typer.Option(
            help="not-worse only when the confidence bound clears this margin "
            "(mean-rank units, or win-rate points below 50%)."
        ),
    ] = None,
    margin_unit: Annotated[
        str, typer.Option(help="mean-rank or win-rate: the unit of --margin.")
    ] = "mean-rank",
    min_questions: Annotated[
        int, typer.Option(help="Refuse a run with fewer ranked questions.")
    ] = MIN_QUESTIONS,
    max_failed: Annotated[
        float, typer.Option(help="Refuse when a candidate's failed-answer share exceeds this.")
    ] = MAX_FAILED,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for machines.")] = False,
) -> None:
    """Exit 0 if the run carries a verdict and every candidate meets the requirement against
    the baseline; 1 (a line per reason) if not; 2 if the run or an option is unusable."""
    from raq.core.escape import one_line
    from raq.result.gate import evidence_problems, gate, read_summary, verdicts_json

    if require not in ("not-worse", "better"):
        raise RaqError("--require takes not-worse or better")
    if margin_unit not in ("mean-rank", "win-rate"):
        raise RaqError("--margin-unit takes mean-rank or win-rate")
    summary = read_summary(run_dir)
    verdicts = gate(
        summary, baseline, candidate, require, alpha,  # type: ignore[arg-type]
        margin=margin, margin_unit=margin_unit,  # type: ignore[arg-type]
        min_questions=min_questions, max_failed=max_failed,
    )  # fmt: skip
    problems = evidence_problems(
        summary, [baseline, *(v.candidate for v in verdicts)],
        min_questions=min_questions, max_failed=max_failed,
    )  # fmt: skip
    if as_json:
        typer.echo(json.dumps(verdicts_json(verdicts) | {"problems": problems}, indent=2))
    else:
        for problem in problems:
            typer.echo(one_line(f"FAIL run: {problem}"))
        for verdict in verdicts:
            typer.echo(
                one_line(f"FAIL {verdict.candidate} vs {verdict.baseline}: refused")
                if problems
                else one_line(verdict.line())
            )
    if not all(v.passed for v in verdicts):
        raise typer.Exit(1)


@app.command("compare")
@_user_errors
def compare_command(
    run_a: Annotated[Path, typer.Argument(help="The earlier run directory.")],
    run_b: Annotated[Path, typer.Argument(help="The later run directory.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for machines.")] = False,
) -> None:
    """What changed between two runs (same candidates or not)."""
    from raq.cli.run_diff import run_differences
    from raq.report.terminal import print_comparison
    from raq.result.gate import compare, read_summary

    summary_a, summary_b = read_summary(run_a), read_summary(run_b)
    diff = compare(summary_a, summary_b)
    warnings = run_differences(run_a, run_b, summary_a, summary_b)
    if as_json:
        typer.echo(json.dumps({**diff, "warnings": warnings}, indent=2))
    else:
        for warning in warnings:
            typer.echo(f"raq: warning: {warning}", err=True)
        print_comparison(diff, str(run_a), str(run_b))


@app.command()
@_user_errors
def view(
    run_dir: Annotated[Path, typer.Argument(help="A run directory.")],
    run_dir_b: Annotated[
        Path | None, typer.Argument(help="A second run, shown side by side per question.")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port (default: a free one).")] = None,
    browser: Annotated[bool, typer.Option(help="Open the page in your web browser.")] = True,
) -> None:
    """Browse a run's questions, answers and judgments in a local, read-only web page."""
    from raq.view import serve

    run_dirs = [run_dir] if run_dir_b is None else [run_dir, run_dir_b]
    try:
        asyncio.run(serve(run_dirs, port=port, open_browser=browser, announce=_announce))
    except KeyboardInterrupt:
        typer.echo("stopped")


def _announce(line: str) -> None:
    typer.echo(line)
    sys.stdout.flush()


@app.command()
@_user_errors
def demo(
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Run directory.")] = None,
    limit: Annotated[int | None, typer.Option(help="Questions to use (default 40).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
    refresh: Annotated[bool, typer.Option(help="Ignore cached responses and call again.")] = False,
) -> None:
    """Run the whole RAQ job offline on a real local model (configs/demo.yaml)."""
    from raq.config import demo_config_path

    run(
        config=demo_config_path(),
        output=output,
        resume=None,
        shard=None,
        limit=limit,
        repeats=None,
        refresh=refresh,
        cache=True,
        preflight=True,
        quiet=quiet,
    )


@app.command("serve-local")
@_user_errors
def serve_local(
    port: Annotated[int | None, typer.Option(help="Port (default: a free one).")] = None,
) -> None:
    """Serve the embedded SmolLM2-135M model on loopback until Ctrl-C (needs the 'local' extra)."""
    import signal
    import time

    from raq.endpoints.local import DEFAULT_ALIAS, LocalModelServer

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # stop the server on kill, too
    with LocalModelServer(port=port) as server:
        typer.echo(f"serving model '{DEFAULT_ALIAS}' at {server.base_url} (Ctrl-C stops it)")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            typer.echo("stopping")


def main() -> None:
    """Console-script entry point: the command, then an exit without the interpreter's
    teardown (raq.cli.leave)."""
    code: object = 0
    try:
        app()
    except KeyboardInterrupt:
        code = 130
    except SystemExit as done:
        code = done.code
    leave(code)


if __name__ == "__main__":  # pragma: no cover
    main()
