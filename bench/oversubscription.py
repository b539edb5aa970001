"""Oversubscription: smoke-retrain training steps alone and beside one busy process, with the
CPU defaults against the alternatives (figures, not a test).

    .venv/bin/python bench/oversubscription.py [--data ../shared/data/cifar10-subset]
        [--steps 10] [--max-seconds 40] [--old-workers 0] [--quiet-steps 8] [--busy-steps 30]

The network and data are the retrain `smoke` preset's: DARTS_V2, C=16, 8 cells, batch 64,
DFS ratio 2, real images through the retrain DataLoader, one SGD step as retrain.trainer
takes it. Each cell of the table runs in a fresh process, because OpenMP reads its waiting
policy once, when torch loads it:

    old          threads = all cores, OMP_WAIT_POLICY unset (libgomp spins while idle),
                 --old-workers loader workers (0: the smoke preset's; the paper preset's was 2)
    new          threads and workers from common.cpu.cpu_budget, the OpenMP waiting policy from
                 common.cpu.choose_openmp_wait_policy (PASSIVE beside a busy process, else
                 OpenMP's default), as the entry points choose them
    new, 1 thr   the new defaults with --threads 1 (what the busy-machine note suggests)
    passive      threads = all cores with OMP_WAIT_POLICY=PASSIVE always (a first
                 attempt, kept as a row: it costs 1.75x on a quiet machine)

"busy" runs the same beside a process this script starts, which spins on one core for the
whole measurement. Per cell: the median time of a step (data loading included) over the
steps after the first (worker start-up, allocations), stopping after --steps steps or
--max-seconds, whichever comes first. Run it on an otherwise quiet machine: eight cells of at
most (--max-seconds + ~10 s start-up) each, under 7 minutes with the defaults, then the
mid-run cells (about 5 more minutes; --only-midrun runs only those).

Load that arrives mid-run (common.threads.ThreadGovernor), each a fresh process with the
default threads (all cores) and the OpenMP policy chosen on a quiet machine:

    mid-run, adapt   runtime.adapt_threads on (the default): --quiet-steps steps alone, then
                     the busy process starts and --busy-steps steps run beside it
    mid-run, fixed   the same with the thread count fixed (runtime.adapt_threads=false)
    quiet, adapt/fixed   --busy-steps steps on a quiet machine with the governor on and off,
                     twice each, alternating, for the governor's cost

The goal: the "mid-run, adapt" steps beside the busy process within 1.3x of "new, 1 thr,
busy", and "quiet, adapt" within 3% of "quiet, fixed".
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "cifar10-subset"
BATCH = 64
SPIN = "while True: pass"


def child(args: argparse.Namespace) -> None:
    """One cell: time training steps with the given threads/workers; print JSON."""
    if args.policy == "auto":  # as the entry points do, before torch loads OpenMP
        from common.cpu import choose_openmp_wait_policy

        choose_openmp_wait_policy()
    import torch

    from common.distributed import DistInfo
    from genotypes import load_genotype
    from retrain import data as rdata
    from retrain import netspec, setup
    from retrain.model import build_network
    from retrain.trainer import Trainer

    torch.set_num_threads(args.threads)
    overrides = [f"data.workers={args.workers}", f"runtime.threads={args.threads}",
                 "runtime.device=cpu", f"batch_size={BATCH}", f"runtime.adapt_threads={args.adapt}",
                 f"data.max_images={BATCH * (args.steps + 1)}", "data.max_test_images=64"]
    cfg = setup.resolve("smoke", overrides, lambda c: False)
    train, test, info = setup.open_data(str(args.data), cfg)
    spec = netspec.make_spec(cfg, load_genotype("DARTS_V2"), info.num_classes, info.input_size)
    train_ds = rdata.train_set(train, test, info, cfg.data.max_images, cfg.cutout)
    test_ds = rdata.test_set(train, test, info, 64)
    t = Trainer(cfg, spec, build_network(spec), DistInfo(), torch.device("cpu"), train_ds, test_ds)
    t.model.train()
    t.train_loader.sampler.set_epoch(0)
    times: list[float] = []
    spinner, started_at = None, None
    start = last = time.perf_counter()
    try:  # the step of retrain.trainer.Trainer.train_epoch
        for x, y in t.governor.watch(t.train_loader, 0):
            if t.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            t.weight_step(t.loss_and_logits, x, y)
            now = time.perf_counter()
            times.append(now - last)
            last = now
            if len(times) == args.compete_after:  # the neighbour arrives mid-run
                spinner, started_at = subprocess.Popen([sys.executable, "-c", SPIN]), len(times)
                start = now
            if len(times) > args.steps or now - start > args.max_seconds:
                break
    finally:
        if spinner is not None:
            spinner.kill()
            spinner.wait()
    print(json.dumps({"threads": torch.get_num_threads(), "workers": args.workers,
                      "policy": os.environ.get("OMP_WAIT_POLICY", "(unset)"), "times": times,
                      "busy_from": started_at,
                      "changes": t.governor.figures().get("thread_changes", [])}))


def run_cell(args: argparse.Namespace, threads: int, workers: int, policy: str,
             busy: bool, adapt: bool = False, compete_after: int = -1, steps: int | None = None,
             max_seconds: float | None = None) -> dict:
    """policy: "unset" (OpenMP's default), "PASSIVE", or "auto" (decided in the child).
    `compete_after`: the child starts the busy process itself after that many steps."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS")}
    if policy == "PASSIVE":
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    spinner = None
    if busy:  # the neighbour: one process spinning on a core for the whole cell
        spinner = subprocess.Popen([sys.executable, "-c", SPIN])
        time.sleep(1.0)
    try:
        r = subprocess.run([sys.executable, __file__, "--child", "--data", str(args.data),
                            "--threads", str(threads), "--workers", str(workers),
                            "--policy", policy, "--adapt", str(adapt).lower(),
                            "--compete-after", str(compete_after),
                            "--steps", str(steps or args.steps),
                            "--max-seconds", str(max_seconds or args.max_seconds)],
                           env=env, capture_output=True, text=True)
    finally:
        if spinner is not None:
            spinner.kill()
            spinner.wait()
    if r.returncode != 0:
        sys.exit(f"a measurement failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="ImageFolder (CIFAR-10 subset)")
    ap.add_argument("--steps", type=int, default=10, help="timed steps per cell (after one warm-up)")
    ap.add_argument("--max-seconds", type=float, default=40.0, help="stop a cell after this long")
    ap.add_argument("--old-workers", type=int, default=0,
                    help="loader workers of the old defaults (smoke preset 0, paper preset 2)")
    ap.add_argument("--quiet-steps", type=int, default=8, help="mid-run cells: steps before the neighbour")
    ap.add_argument("--busy-steps", type=int, default=30, help="mid-run cells: steps beside it")
    ap.add_argument("--only-midrun", action="store_true", help="skip the start-up table")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--adapt", default="false", help=argparse.SUPPRESS)
    ap.add_argument("--compete-after", type=int, default=-1, help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--workers", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--policy", default="unset", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args)
        return
    from common.cpu import available_cores, busy_cores, cpu_budget

    cores = available_cores()
    new = cpu_budget(None, None, "cpu", 32)
    others = busy_cores()
    print(f"{cores} cores (os.cpu_count {os.cpu_count()}), {others} other process(es) running "
          f"at the start{'' if not others else ': the machine is not quiet, figures are unreliable'}")
    configs = [("old", os.cpu_count() or cores, args.old_workers, "unset"),
               ("passive", new.threads, new.workers, "PASSIVE"),
               ("new", new.threads, new.workers, "auto"),
               ("new, --threads 1", 1, new.workers, "auto")]
    rows = []
    for name, threads, workers, policy in ([] if args.only_midrun else configs):
        alone = None
        for busy in (False, True):
            r = run_cell(args, threads, workers, policy, busy)
            steps = r["times"][1:] or r["times"]
            s = statistics.median(steps)
            alone = s if not busy else alone
            rows.append((name, r["threads"], r["workers"], r["policy"], "busy" if busy else "alone",
                         len(steps), s, BATCH / s, s / alone))
            print(f"  {name:18s} {'busy' if busy else 'alone':5s}: {s:.3f} s/step "
                  f"({len(steps)} steps)", flush=True)
    print()
    print("| defaults | threads | workers | OMP_WAIT_POLICY | neighbour | steps | s/step | "
          "img/s | vs alone |")
    print("|---|---:|---:|---|---|---:|---:|---:|---:|")
    for name, t, w, pol, cond, n, s, ips, rel in rows:
        print(f"| {name} | {t} | {w} | {pol} | {cond} | {n} | {s:.3f} | {ips:.1f} | {rel:.2f}x |")
    midrun(args, new)


def midrun(args: argparse.Namespace, new) -> None:
    """The load-arrives-mid-run cells and the governor's cost on a quiet machine."""
    n, budget = args.quiet_steps + args.busy_steps, args.max_seconds * 3
    out: dict[str, list[float]] = {}
    one = run_cell(args, 1, new.workers, "auto", True, steps=args.busy_steps, max_seconds=budget)
    out["new, 1 thr, busy"] = one["times"][1:]
    for name, adapt in (("mid-run, fixed", False), ("mid-run, adapt", True)):
        r = run_cell(args, new.threads, new.workers, "auto", False, adapt=adapt,
                     compete_after=args.quiet_steps, steps=n, max_seconds=budget)
        out[name] = r["times"][r["busy_from"]:]
        for c in r["changes"]:
            print(f"  {name}: threads {c['from']} -> {c['to']} at {c['at']} "
                  f"(others {c['others']})", flush=True)
    for _ in range(2):  # alternating, so that a drift in the machine's speed hits both
        for name, adapt in (("quiet, fixed", False), ("quiet, adapt", True)):
            r = run_cell(args, new.threads, new.workers, "auto", False, adapt=adapt,
                         steps=args.busy_steps, max_seconds=budget)
            out.setdefault(name, []).extend(r["times"][1:])
    base = statistics.median(out["new, 1 thr, busy"])
    quiet = statistics.median(out["quiet, fixed"])
    print()
    print("| case | steps | median s/step | mean s/step | vs 1 thr busy | vs quiet fixed |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, times in out.items():
        med = statistics.median(times)
        print(f"| {name} | {len(times)} | {med:.3f} | {statistics.fmean(times):.3f} | "
              f"{med / base:.2f}x | {med / quiet:.3f}x |")


if __name__ == "__main__":
    main()
