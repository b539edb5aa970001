"""Command line: `python -m genotypes show|draw|plot|random ...`. Errors: one line on stderr,
exit 2."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from genotypes.formats import genotype_lines, load_genotype, save_genotype, to_json
from genotypes.genotype import FSSpec, Genotype, GenotypeError
from genotypes.random import random_genotype
from genotypes.zoo import ZOO

_G_HELP = (f"a genotype file (.json/.yaml/.yml/.txt), a search run directory, a zoo name "
           f"({', '.join(ZOO)}) or a Genotype(...) repr")


def _print(g: Genotype) -> None:
    """The JSON, then the DARTS line (pasteable into a DARTS codebase) and the fs: line."""
    print(to_json(g), end="")
    for line in genotype_lines(g):
        print(line)


def _show(args: argparse.Namespace) -> None:
    _print(load_genotype(args.genotype))


def _draw(args: argparse.Namespace) -> None:
    from genotypes.draw import draw_genotype

    for p in draw_genotype(load_genotype(args.genotype), args.out, fmt=args.format):
        print(p)


def _plot(args: argparse.Namespace) -> None:
    from genotypes.plot import plot_run

    for p in plot_run(args.run_dir, args.out):
        print(p)


def _ratios(text: str) -> list[float]:
    """--ratios 1,2,4,8: two or more distinct ratios >= 1."""
    try:
        ratios = [float(r) for r in text.split(",") if r.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list of ratios such as 1,2,4,8") from None
    if len(ratios) < 2 or len(set(ratios)) != len(ratios) or not all(1.0 <= r < float("inf")
                                                                      for r in ratios):
        raise argparse.ArgumentTypeError(f"{text!r}: give two or more distinct ratios >= 1, "
                                         "e.g. 1,2,4,8")
    return sorted(ratios)


def _search_fs() -> Any:
    """The search's FS defaults (the `search` section's `fs`: dfs, ratio 2, 4 offsets), which
    a draw takes unless told otherwise."""
    from common.config_schema import SearchFs

    return SearchFs()


def _search_budget() -> Any:
    """The search's budget defaults (the `search` section's `budget`: the width rule)."""
    from common.config_schema import Budget

    return Budget()


def _random(args: argparse.Namespace) -> None:
    if args.ratio is not None and args.fs == "off":
        raise ValueError("--ratio has no effect with --fs off; drop it or use --fs fs/dfs")
    if args.ratio is not None and not 1.0 <= args.ratio < float("inf"):
        raise ValueError(f"--ratio {args.ratio:g} is invalid: an FS ratio is a number >= 1")
    if args.ratios is not None and args.budget is None:
        raise ValueError("--ratios are the candidates of the budget fit; add --budget (e.g. 0.5M)")
    if args.max_ratio < 2:
        raise ValueError(f"--max-ratio {args.max_ratio:g} is invalid: the rule's ratios are 1 "
                         "and those up to it; give 2 or more (--ratio 1 fixes ratio 1)")
    if args.ratios is not None and args.fs == "off":
        raise ValueError("--ratios need FS layers, but --fs is off; use --fs dfs or --fs fs")
    search_fs = _search_fs()
    fs = None if args.fs == "off" else FSSpec(
        ratio=float(search_fs.ratio if args.ratio is None else args.ratio),
        dfs=args.fs == "dfs", num_offsets=int(search_fs.num_offsets))
    g = random_genotype(args.seed, fs)
    if args.budget is not None:
        # The command line (not the library) counts with space's counter, the search's own:
        # only here, and only on demand, so that importing genotypes stays free of torch and
        # of the rest of the project (tests/test_import_graph.py holds it below search).
        from common.checks import parse_count
        from space.darts.budget_fit import CountedNet
        from space.darts.width_fit import fit_budget, rule_ratios

        try:
            budget = parse_count(args.budget)
        except ValueError:
            raise ValueError(f"--budget {args.budget!r} is not a parameter count; give one such "
                             "as 1500000, 1.5M or 800k") from None
        for name in ("init_channels", "layers", "dataset_classes"):
            if getattr(args, name) < 1 or (name == "init_channels" and args.init_channels % 2):
                flag = "--" + name.replace("_", "-")
                raise ValueError(f"{flag} {getattr(args, name)} is invalid: give a positive "
                                 f"{'even ' if name == 'init_channels' else ''}integer")
        ratios = args.ratios
        if ratios is None and args.ratio is None and args.budget_rule == "width" and fs is not None:
            ratios = rule_ratios(args.max_ratio)  # the search's own candidates under the rule
        fit = fit_budget(g, budget, ratios, fs,
                         CountedNet(args.init_channels, args.layers, args.dataset_classes),
                         args.budget_rule)
        for line in fit.lines():
            print(line, file=sys.stderr)
        if not fit.within:  # nothing written: the draw is not what was asked for
            raise ValueError(f"random draw {args.seed} cannot fit {budget:,} parameters ({fit.exact:,} "
                             "with every op at its largest ratio, at the narrowest width the "
                             "rule tries); try the next --seed, larger --ratios or a larger "
                             "--budget")
        g = fit.genotype
    if args.out:
        save_genotype(g, args.out)
    _print(g)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `python -m genotypes`."""
    # Run as the dfsnet-genotypes console script, the usage names it (as common.cli_flags does).
    script = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    ap = argparse.ArgumentParser(prog=script if script.startswith("dfsnet-") else "python -m genotypes",
                                 description=__doc__)
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
    r = sub.add_parser("random", help="draw a genotype uniformly from the DARTS space (each node: "
                       "2 distinct inputs, each op uniform over the 7 non-none ops)")
    r.add_argument("--seed", type=int, required=True, help="the draw's seed (same seed, same genotype)")
    r.add_argument("--out", default=None, help="also write the genotype to this file "
                   "(.json/.yaml/.yml/.txt)")
    search_fs = _search_fs()
    r.add_argument("--fs", default=search_fs.mode, choices=("off", "fs", "dfs"),
                   help=f"FS settings recorded in the genotype (default {search_fs.mode}, the "
                   "search's; off: plain convolutions)")
    r.add_argument("--ratio", type=float, default=None,
                   help=f"FS ratio (default {search_fs.ratio:g}, the search's)")
    r.add_argument("--budget", default=None, metavar="PARAMS",
                   help="fit the ops' ratios to this many effective parameters as a search fits "
                   "its genotype, e.g. 0.5M, 800k")
    r.add_argument("--ratios", type=_ratios, default=None, metavar="R1,R2,...",
                   help="the ratios an op may take in the fit, e.g. 1,2,4,8 (not with --fs off)")
    budget = _search_budget()
    r.add_argument("--budget-rule", default=budget.rule, choices=("width", "ratios"),
                   help=f"how the budget is met (default {budget.rule}, the search's): width: "
                   "ratios up to --max-ratio, then a narrower network (the genotype records "
                   "fs.width); ratios: the ratios alone")
    r.add_argument("--max-ratio", type=float, default=budget.max_ratio,
                   help="width rule without --ratios or --ratio: the largest ratio candidate "
                   f"(default {budget.max_ratio:g}, the search's)")
    r.add_argument("--init-channels", type=int, default=36, help="width of the network the "
                   "budget counts (default 36, the paper's)")
    r.add_argument("--layers", type=int, default=20, help="cells of the network the budget counts "
                   "(default 20)")
    r.add_argument("--dataset-classes", type=int, default=10, help="classes of the counted "
                   "network's classifier (default 10)")
    r.set_defaults(func=_random)
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
