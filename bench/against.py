"""This checkout's step times against another checkout's (e.g. an earlier commit),
measured in the same run (figures, not a test).

    .venv/bin/python bench/against.py OTHER_CHECKOUT [--rounds 3] [--seed 0] \\
        -- search_step.py --fs dfs --order both --steps 5
    .venv/bin/python bench/against.py OTHER_CHECKOUT -- retrain_step.py --repeats 10

Each round runs the named bench once in each checkout, in a random (seeded) order, so that
machine noise hits both alike; each run uses its own checkout's bench script and code
(PYTHONPATH), and this interpreter. The rows the two benches print for their own code are
read back: search_step.py's `ours` rows (ms/step, per fs mode and order) and
retrain_step.py's variant rows (median train step ms, per variant). The table shows the
median over rounds of each row in both checkouts and this checkout's time over the other's.
Run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]

#: bench script -> regex of the rows to compare: (row name groups..., milliseconds)
ROWS = {
    # The DARTS rows (a checkout with algorithms prints an `algo` column, an older one none).
    "search_step.py": re.compile(r"^\| (ours) \| (?:darts \| )?(\w+) \| (\d) \| (\d+) \|", re.M),
    "retrain_step.py": re.compile(r"^(off|FS|DFS)\s+([\d.]+)\s", re.M),
}


def run_bench(checkout: Path, script: str, args: list[str]) -> dict[str, float]:
    """{row name: ms} of one run of `script` in `checkout`."""
    r = subprocess.run([sys.executable, str(checkout / "bench" / script), *args], cwd=checkout,
                       env={**os.environ, "PYTHONPATH": str(checkout)},
                       capture_output=True, text=True, check=False)
    if r.returncode:
        raise SystemExit(f"{script} failed in {checkout}:\n{r.stderr[-2000:]}")
    rows = {" ".join(m[:-1]): float(m[-1]) for m in ROWS[script].findall(r.stdout)}
    if not rows:
        raise SystemExit(f"{script} in {checkout} printed no rows to compare:\n{r.stdout[-2000:]}")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("other", type=Path, help="the other checkout (a git worktree, say)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0, help="seed of the per-round order")
    argv = sys.argv[1:]
    cut = argv.index("--") if "--" in argv else len(argv)
    a, bench = ap.parse_args(argv[:cut]), argv[cut + 1:]  # -- SCRIPT [ITS OPTIONS]
    if not bench or bench[0] not in ROWS:
        ap.error(f"name a bench after --: one of {', '.join(ROWS)}")
    script, args = bench[0], bench[1:]
    other = a.other.resolve()
    if not (other / "bench" / script).is_file():
        ap.error(f"{other} has no bench/{script}; give a checkout of this project")
    sides = {"this": HERE, "other": other}
    times: dict[str, dict[str, list[float]]] = {s: {} for s in sides}
    rng = random.Random(a.seed)
    for r in range(a.rounds):
        order = list(sides)
        rng.shuffle(order)
        for side in order:
            print(f"[round {r + 1}/{a.rounds}] {side}: {script} {' '.join(args)}", file=sys.stderr,
                  flush=True)
            for row, ms in run_bench(sides[side], script, args).items():
                times[side].setdefault(row, []).append(ms)
    print(f"{script} {' '.join(args)}; median over {a.rounds} rounds, ms")
    print(f"this: {HERE}\nother: {other}\n")
    print("| row | this | other | this / other |\n|---|---:|---:|---:|")
    for row, ours in times["this"].items():
        theirs = times["other"].get(row)
        if not theirs:
            print(f"| {row} | {statistics.median(ours):.1f} | n/a | |")
            continue
        m, o = statistics.median(ours), statistics.median(theirs)
        print(f"| {row} | {m:.1f} | {o:.1f} | {m / o:.3f} |")


if __name__ == "__main__":
    main()
