"""The ``ntknas`` command line: argparse plus a registry of commands, each calling the library."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

_COMMANDS: dict[str, tuple[Callable[[argparse.ArgumentParser], None], Callable]] = {}


class UsageError(Exception):
    """Bad input from the user: printed as one line, exit code 2."""


def command(name: str, add_args: Callable[[argparse.ArgumentParser], None]):
    """Registers ``run(args) -> int`` as ``ntknas NAME``."""

    def deco(run):
        _COMMANDS[name] = (add_args, run, run.__doc__ or "")
        return run

    return deco


def _bench_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true", help="a small grid that runs in a minute")
    p.add_argument("--out", default=None, help="CSV file for the results")
    p.add_argument("--repeats", type=int, default=3, help="timed repeats per case (median kept)")
    p.add_argument(
        "--timeout", type=float, default=60.0, help="skip cases estimated slower than this (s)"
    )


@command("bench", _bench_args)
def _bench(args) -> int:
    """Time every NTK method side by side (the engine's benchmark)."""
    from ntknas import bench

    bench.main(quick=args.quick, out=args.out, repeats=args.repeats, timeout=args.timeout)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ntknas", description="Training-free NAS scored by the finite-width NTK."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (add_args, run, doc) in sorted(_COMMANDS.items()):
        p = sub.add_parser(name, help=doc.splitlines()[0] if doc else None, description=doc)
        add_args(p)
        p.set_defaults(_run=run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except UsageError as e:
        print(f"ntknas {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
