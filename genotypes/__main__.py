"""Command line: `python -m genotypes show|draw|plot ...`. Errors: one line on stderr, exit 2."""

from __future__ import annotations

import argparse
import os
import sys

from genotypes.formats import load_genotype, to_json, to_repr
from genotypes.genotype import GenotypeError
from genotypes.zoo import ZOO

_G_HELP = (f"a genotype file (.json/.yaml/.yml/.txt), a search run directory, a zoo name "
           f"({', '.join(ZOO)}) or a Genotype(...) repr")


def _show(args: argparse.Namespace) -> None:
    g = load_genotype(args.genotype)
    print(to_json(g), end="")
    print(to_repr(g))


def _draw(args: argparse.Namespace) -> None:
    from genotypes.draw import draw_genotype

    for p in draw_genotype(load_genotype(args.genotype), args.out, fmt=args.format):
        print(p)


def _plot(args: argparse.Namespace) -> None:
    from genotypes.plot import plot_run

    for p in plot_run(args.run_dir, args.out):
        print(p)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `python -m genotypes`."""
    ap = argparse.ArgumentParser(prog="python -m genotypes", description=__doc__)
    sub = ap.add_subparsers(dest="command", required=True)
    s = sub.add_parser("show", help="print a genotype as JSON and as the DARTS repr")
    s.add_argument("genotype", help=_G_HELP)
    s.set_defaults(func=_show)
    d = sub.add_parser("draw", help="draw the normal and reduce cells with graphviz")
    d.add_argument("genotype", help=_G_HELP)
    d.add_argument("--out", required=True, help="output directory")
    d.add_argument("--format", default="png", choices=("png", "pdf", "svg"))
    d.set_defaults(func=_draw)
    p = sub.add_parser("plot", help="plot alphas, curves, offset entropy and size "
                       "(E[P] vs budget) of a search run")
    p.add_argument("run_dir", help="search run directory holding log.jsonl")
    p.add_argument("--out", default=None, help="output directory (default RUN_DIR/plots)")
    p.set_defaults(func=_plot)
    return ap


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except BrokenPipeError:  # `... | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (GenotypeError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
