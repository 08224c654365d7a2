"""The ``ntknas`` command line: argparse plus a registry of commands, each calling the library.

Bad input (an unknown space, proxy or sampler, a config outside its space, malformed JSON, an
unusable storage URL) is reported as one line on stderr with exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable

_COMMANDS: dict[str, tuple[Callable[[argparse.ArgumentParser], None], Callable, str]] = {}


class UsageError(Exception):
    """Bad input from the user: printed as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are one line (no usage dump), exit code 2."""

    def error(self, message: str):
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def command(name: str, add_args: Callable[[argparse.ArgumentParser], None]):
    """Registers ``run(args) -> int`` as ``ntknas NAME``."""

    def deco(run):
        _COMMANDS[name] = (add_args, run, run.__doc__ or "")
        return run

    return deco


# --- options shared by the commands that score ------------------------------------------------


def _int_or_none(text: str) -> int | None:
    """An int argument that 'none' lifts."""
    if text.strip().lower() == "none":
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer or 'none', got {text!r}") from None


def _scoring_args(p: argparse.ArgumentParser) -> None:
    from ntknas.scoring import BN_MODES, DEFAULT_BATCH, DEFAULT_BN, MATRIX_FREE_ABOVE

    g = p.add_argument_group(
        "scoring (turn these up on a GPU: --input-size 224 --patch 16 --classes 1000)"
    )
    g.add_argument(
        "--batch",
        type=int,
        default=DEFAULT_BATCH,
        help="examples N; the NTK is (N·O)x(N·O) (default %(default)s)",
    )
    g.add_argument(
        "--seed", type=int, default=0, help="seeds initialization, data and sampler (default 0)"
    )
    g.add_argument(
        "--data",
        choices=("gaussian", "digits", "mnist"),
        default="gaussian",
        help="input batch (default gaussian)",
    )
    g.add_argument("--classes", type=int, default=None, help="logits O (default: the space's, 10)")
    g.add_argument(
        "--input-size",
        type=int,
        default=None,
        help="input height = width (default: the space's, 32)",
    )
    g.add_argument(
        "--patch",
        type=int,
        default=None,
        help="ViT patch size (default: the space picks, 8 at 32x32)",
    )
    g.add_argument(
        "--bn",
        choices=BN_MODES,
        default=DEFAULT_BN,
        help="BatchNorm on batch statistics (train, as TE-NAS; ranks NAS-Bench-201 far better) "
        "or on initial statistics (eval: a per-example NTK); the same default for score, "
        "search and compare (default %(default)s)",
    )
    g.add_argument("--float64", action="store_true", help="compute the kernel in float64")
    g.add_argument(
        "--method", default="auto", help="NTK method (default auto: the cheapest per architecture)"
    )
    g.add_argument(
        "--matrix-free-above",
        type=_int_or_none,
        default=MATRIX_FREE_ABOVE,
        metavar="ROWS",
        help="read the proxies without forming the kernel (Lanczos, deflated Hutchinson trace, "
        "SLQ; no pseudo-NTK proxies) when it has more than ROWS = N·O rows; 'none' always forms "
        "it (default %(default)s)",
    )
    g.add_argument(
        "--no-compile-cache",
        action="store_true",
        help="do not keep compiled kernels on disk (default: kept in ~/.cache/ntknas/jax; "
        "the same as NTKNAS_COMPILE_CACHE=0)",
    )


def _score_options(args, space) -> dict:
    if args.float64:
        import jax

        jax.config.update("jax_enable_x64", True)
    options = dict(
        batch=args.batch,
        seed=args.seed,
        data=args.data,
        num_classes=args.classes,
        bn=args.bn,
        float64=args.float64,
        method=args.method,
        matrix_free_above=args.matrix_free_above,
    )
    if args.input_size is not None:
        options["input_shape"] = (args.input_size, args.input_size, space.default_input_shape[-1])
    if args.patch is not None:
        options["overrides"] = {"patch_size": args.patch}
    return options


def _space(name: str):
    from search_spaces import get_space

    return get_space(name)


def _console(width: int = 140):
    """A console at least ``width`` wide (a pipe would get 80): 100 fits the leaderboards."""
    from rich.console import Console

    return Console(width=max(Console().width, width))


def _param_bound(text: str):
    """``--min-params``/``--max-params``: 5000000, 5M, 500k, none (no bound), default."""
    from ntknas.study import SPACE_DEFAULT

    t = text.strip().lower()
    if t in ("none", SPACE_DEFAULT):
        return None if t == "none" else SPACE_DEFAULT
    scale = {"k": 10**3, "m": 10**6, "g": 10**9}.get(t[-1:], 1)
    try:
        value = float(t[:-1] if scale > 1 else t) * scale
    except ValueError:
        value = math.nan
    if not value.is_integer():
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a parameter count (e.g. 5000000 or 5M), none or default"
        )
    return int(value)


# --- commands -----------------------------------------------------------------------------------


def _search_args(p: argparse.ArgumentParser, leaderboard: bool = True) -> None:
    from ntknas.study import (
        DEFAULT_HEARTBEAT,
        DEFAULT_RETRIES,
        DEFAULT_STORAGE,
        RECONNECT_SECONDS,
        sampler_names,
    )

    p.add_argument("--space", required=True, help="search space (see `ntknas spaces`)")
    p.add_argument(
        "--trials", type=int, default=20, help="trials to add now, all --jobs together (default 20)"
    )
    p.add_argument(
        "--objective",
        default=None,
        help="proxy[:min|max], several comma separated (a Pareto search), or a rank sum "
        "rank(a:min+b:max) (TE-NAS aggregation); default: the space's (`ntknas spaces`)",
    )
    p.add_argument(
        "--sampler", choices=sampler_names(), default="tpe", help="Optuna sampler (default tpe)"
    )
    p.add_argument(
        "--storage",
        default=DEFAULT_STORAGE,
        help="Optuna storage: sqlite:///F.db (default %(default)s; one process), journal:F.log "
        "(processes on one machine), postgresql://USER@HOST/DB (many machines)",
    )
    p.add_argument(
        "--study", default=None, help="study name (default SPACE-OBJECTIVE); rerun to resume"
    )
    for bound, side in (("--min-params", "at least"), ("--max-params", "at most")):
        p.add_argument(
            bound,
            type=_param_bound,
            default="default",
            help=f"budget: {side} this many parameters in the network as scored (5000000 or 5M); "
            "none lifts the bound (default: the space's, see `ntknas spaces`)",
        )
    if leaderboard:
        p.add_argument("--top", type=int, default=10, help="leaderboard rows (default 10)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    g = p.add_argument_group("workers (share a study: --storage journal:FILE.log or postgresql://)")
    g.add_argument("--jobs", type=int, default=1, help="worker processes on this machine")
    g.add_argument(
        "--heartbeat", type=int, default=DEFAULT_HEARTBEAT, help="seconds between heartbeats"
    )
    g.add_argument(
        "--grace", type=int, default=None, help="seconds without one until a trial is retried"
    )
    g.add_argument(
        "--retries",
        type=int,
        default=DEFAULT_RETRIES,
        help="a candidate that killed its worker is retried this many times, then failed as "
        "poison (default %(default)s)",
    )
    g.add_argument(
        "--reconnect",
        type=float,
        default=RECONNECT_SECONDS,
        help="seconds a worker waits for a database server that went away (default %(default)s)",
    )
    _scoring_args(p)


@command("search", _search_args)
def _search(args) -> int:
    """Search a space: Optuna proposes, the full O×O NTK scores; ends with the leaderboard."""
    from ntknas.study import leaderboard, render

    console = _console(100)
    study, code = _run_search(args, console)
    if study is None:
        return code
    _print_summary(study, console)
    render(leaderboard(study, top=args.top), "table", study=study, console=console)
    return code


@command("worker", lambda p: _search_args(p, leaderboard=False))
def _worker(args) -> int:
    """Join a study as a worker (run it on many machines): a search without the leaderboard."""
    console = _console()
    study, code = _run_search(args, console)
    if study is not None:
        _print_summary(study, console)
    return code


def _run_search(args, console):
    """Runs ``ntknas.search`` for ``search`` and ``worker``: (study or None, exit code)."""
    import ntknas
    from ntknas.study import default_study_name, load_study, open_storage

    space = _space(args.space)
    interrupted = False
    options = _score_options(args, space)  # its seed also seeds the sampler
    try:
        study = ntknas.search(
            space,
            args.trials,
            objective=args.objective,
            sampler=args.sampler,
            storage=args.storage,
            study_name=args.study,
            min_params=args.min_params,
            max_params=args.max_params,
            progress=not args.no_progress,
            console=console,
            jobs=args.jobs,
            heartbeat=args.heartbeat,
            grace=args.grace,
            retries=args.retries,
            reconnect=args.reconnect,
            **options,
        )
    except KeyboardInterrupt:
        interrupted = True
        if args.storage == "memory":
            return None, 130
        objective = args.objective or space.default_objective
        name = args.study or default_study_name(space.name, objective)
        study = load_study(open_storage(args.storage), name)
    return study, 130 if interrupted else 0


def _print_summary(study, console) -> None:
    from ntknas.study import out_of_budget

    states: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        state = "outside the budget" if out_of_budget(t) else t.state.name.lower()
        states[state] = states.get(state, 0) + 1
    failed = [t for t in study.get_trials(deepcopy=False) if t.state.name == "FAIL"]
    console.print(
        f"study {study.study_name}: " + ", ".join(f"{n} {s}" for s, n in sorted(states.items()))
    )
    for t in failed[-3:]:
        reason = t.user_attrs.get("fail_reason", "its worker stopped (no heartbeat)")
        console.print(f"  trial {t.number} failed: {reason}")


def _leaderboard_args(p: argparse.ArgumentParser) -> None:
    from ntknas.study import DEFAULT_STORAGE

    p.add_argument(
        "--study", default=None, help="study name (default: the only study in the storage)"
    )
    p.add_argument(
        "--storage", default=DEFAULT_STORAGE, help="Optuna storage URL (default %(default)s)"
    )
    p.add_argument("--top", type=int, default=None, help="show the best K")
    p.add_argument(
        "--sort", default=None, help="proxy[:min|max] to rank by (default: the study's objective)"
    )
    p.add_argument("--format", choices=("table", "csv", "json"), default="table")


@command("leaderboard", _leaderboard_args)
def _leaderboard(args) -> int:
    """Rank the architectures of a study by their proxies (table, CSV or JSON)."""
    from ntknas.study import leaderboard, load_study, open_storage, render

    study = load_study(open_storage(args.storage, must_exist=True), args.study)
    df = leaderboard(study, top=args.top, sort=args.sort)
    text = render(df, args.format, study, _console(100))
    if text is not None:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return 0


def _score_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--space", required=True, help="search space (see `ntknas spaces`)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--config", help="one config as JSON")
    src.add_argument(
        "--configs",
        help="a JSONL file, one config per line; the rows get a column score, the space's "
        "default objective over them (higher is better), and the table lists them best first",
    )
    p.add_argument("--out", default=None, help="write the rows to this CSV (or .json) file")
    p.add_argument(
        "--format",
        choices=("table", "csv", "json"),
        default="table",
        help="stdout format without --out",
    )
    _scoring_args(p)


def _read_configs(args) -> list[dict]:
    from ntknas.configs import parse_config, read_jsonl

    if args.config is not None:
        return [parse_config(args.config, "--config")]
    return read_jsonl(args.configs)


@command("score", _score_args)
def _score(args) -> int:
    """Score given architectures in one process: one row per config, the config as JSON first.

    Several configs get a ``score`` column: the space's default objective (its rank sum over
    the configs given; higher is better), so a list ranks the way a search would rank it. One
    config has no score: a rank needs others."""
    from ntknas.scoring import score_many
    from ntknas.study import render

    space = _space(args.space)
    configs = _read_configs(args)
    df = score_many(space, configs, **_score_options(args, space))
    if args.out:
        try:
            if args.out.endswith(".json"):
                df.to_json(args.out, orient="records", indent=1)
            else:
                df.to_csv(args.out, index=False)
        except OSError as e:
            raise UsageError(f"cannot write {args.out}: {e.strerror}") from None
        print(f"wrote {len(df)} rows to {args.out}", file=sys.stderr)
    elif args.format == "table":  # best score first (the rows in input order without one)
        if "score" in df:
            df = df.sort_values("score", ascending=False, kind="stable", na_position="last")
        shown = df.assign(rank=range(1, len(df) + 1))
        render(shown, "table", console=_console(100), objective=space.default_objective)
    else:
        sys.stdout.write(render(df, args.format))
    return 1 if (df["error"] != "").any() else 0


@command("spaces", lambda p: None)
def _spaces(args) -> int:
    """List the registered search spaces with their choices and sizes."""
    from rich.table import Table

    from ntknas.study import space_summaries

    table = Table(title="search spaces")
    for c in ("name", "size", "input", "classes", "budget", "objective", "choices"):
        table.add_column(c, overflow="fold")
    for s in space_summaries():
        size = "infinite" if s["size"] is None else f"{s['size']:,}"
        table.add_row(
            s["name"],
            size,
            s["input_shape"],
            str(s["num_classes"]),
            s["budget"],
            s["objective"],
            s["choices"],
        )
    _console().print(table)
    return 0


def _compare_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--space", required=True, help="search space (see `ntknas spaces`)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--configs", help="a JSONL file, one config per line")
    src.add_argument(
        "--samples",
        type=int,
        default=None,
        help="K architectures drawn with --seed: from the ground-truth rows if given, else from "
        "the space (default 20)",
    )
    p.add_argument("--ground-truth", default=None, help="CSV with a metric per architecture")
    p.add_argument(
        "--metric",
        default=None,
        help="ground-truth column(s) to correlate with, comma separated (default: all numeric)",
    )
    p.add_argument(
        "--key",
        default="config",
        help="ground-truth column naming the architecture: a JSON config, or COLUMN=FIELD for "
        "one config field, e.g. op_indices=cell for NAS-Bench-201 (default %(default)s)",
    )
    p.add_argument("--out", default="compare-out", help="output folder (default %(default)s)")
    p.add_argument(
        "--naswot-batch", type=int, default=32, help="NASWOT's batch (default %(default)s)"
    )
    p.add_argument(
        "--bootstrap", type=int, default=1000, help="bootstrap resamples (default %(default)s)"
    )
    _scoring_args(p)


@command("compare", _compare_args)
def _compare(args) -> int:
    """Rank every proxy against ground truth (or each other): CSV, markdown summary, plots."""
    from ntknas import compare
    from ntknas.configs import read_jsonl

    space = _space(args.space)
    df, report = compare.run(
        space,
        read_jsonl(args.configs) if args.configs else None,
        samples=args.samples,
        ground_truth=args.ground_truth,
        metric=args.metric,
        key=args.key,
        out=args.out,
        naswot_batch=args.naswot_batch,
        bootstrap=args.bootstrap,
        on_row=lambda i, n, r: print(f"{i + 1}/{n} {r['description']}", file=sys.stderr),
        **_score_options(args, space),
    )
    sys.stdout.write(report["summary"])
    print(f"wrote {len(report['files'])} files to {args.out}", file=sys.stderr)
    return 1 if (df["error"] != "").any() else 0


def _bench_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true", help="a small grid that runs in a minute")
    p.add_argument("--out", default=None, help="CSV file for the results")
    p.add_argument("--repeats", type=int, default=3, help="timed repeats per case (median kept)")
    p.add_argument(
        "--timeout", type=float, default=60.0, help="skip cases estimated slower than this (s)"
    )
    p.add_argument("--match", default=None, help="only the cases whose name contains this")


@command("bench", _bench_args)
def _bench(args) -> int:
    """Time every NTK method side by side (the engine's benchmark)."""
    from ntknas import bench

    bench.main(
        quick=args.quick,
        out=args.out,
        repeats=args.repeats,
        timeout=args.timeout,
        match=args.match,
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="ntknas", description="Training-free NAS scored by the finite-width NTK.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, (add_args, run, doc) in sorted(_COMMANDS.items()):
        p = sub.add_parser(name, help=doc.splitlines()[0] if doc else None, description=doc)
        add_args(p)
        p.set_defaults(_run=run)
    return parser


def main(argv: list[str] | None = None) -> int:
    from ntknas.study import Terminated

    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help (0) or a usage error (2, already printed in one line)
        return int(e.code or 0)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    if getattr(args, "no_compile_cache", False):  # read by this process and spawned workers
        os.environ["NTKNAS_COMPILE_CACHE"] = "0"
    try:
        return int(args._run(args) or 0)
    except (UsageError, ValueError) as e:  # the library raises ValueError for bad input only
        msg = " ".join(str(e).split())
        if getattr(args, "storage", None):  # a password in --storage never reaches the terminal
            from ntknas.study import mask_text

            msg = mask_text(msg, args.storage)
        print(f"ntknas {args.command}: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Terminated as e:  # SIGTERM: running trials were failed and queued for another worker
        print(f"ntknas {args.command}: terminated (SIGTERM)", file=sys.stderr)
        return e.exit_code


if __name__ == "__main__":
    sys.exit(main())
