"""One search epoch on a CIFAR-10-sized set, and the Markdown report of a device check
(bench/device_check.sh runs both; figures, not tests).

    python bench/device_epoch.py epoch --out DIR --data SUBSET [--device cuda] [--algo pc-darts]
    python bench/device_epoch.py report --out DIR      # DIR/device_check.md from DIR/*.json

`epoch` runs the search command itself (paper preset: DFS ratio 2, first order, C=16, 8 cells,
batch 64) for one epoch on the subset's training images tiled, as symlinks, to CIFAR-10's
50,000 (for timing only: the images repeat), and extrapolates to a 50-epoch search.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _tile(src: Path, dst: Path, counts: dict[str, int]) -> None:
    """An ImageFolder at `dst` whose splits hold counts[split] symlinks cycling over `src`'s
    images of that split (for timing only: the images repeat)."""
    for split, n in counts.items():
        files = sorted(p for p in (src / split).glob("*/*") if p.is_file())
        for i in range(n):
            f = files[i % len(files)]
            link = dst / split / f.parent.name / f"{i}{f.suffix}"
            link.parent.mkdir(parents=True, exist_ok=True)
            if not link.is_symlink():
                link.symlink_to(f.resolve())


def section_epoch(args) -> dict:
    """One search epoch (the paper preset: DFS, first order, batch 64) on the subset tiled to
    CIFAR-10's 50,000 training images, run by the search command itself; the 50-epoch search
    extrapolated from it."""
    src = Path(args.data or "")
    if not (src / "train").is_dir():
        return {"skipped": f"no ImageFolder with train/ at {args.data!r}"}
    work = Path(args.work)
    tiled = work / "cifar10-sized"
    _tile(src, tiled, {"train": 50_000})
    rows = []
    for algo in ["darts", *args.algo]:
        run = work / f"epoch-{algo}"
        cmd = [sys.executable, "-m", "search", str(tiled), "--epochs", "1", "--device",
               args.device, "--out", str(run), "--overwrite", "--no-download",
               "--set", "runtime.plot=false", "--set", "runtime.draw_every=0"]
        cmd += ["--algo", algo] if algo != "darts" else []
        t0 = time.perf_counter()
        r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - t0
        log = run / "log.jsonl"
        if r.returncode or not log.is_file():
            rows.append({"algo": algo, "error": (r.stderr or r.stdout)[-300:]})
            continue
        rec = json.loads(log.read_text().splitlines()[-1])
        rows.append({"algo": algo, "train_s": rec["seconds"], "wall_s": wall,
                     "images_per_s": rec["images_per_s"],
                     "gpu_hours_50_epochs_train": 50 * rec["seconds"] / 3600,
                     "gpu_hours_50_epochs_wall": 50 * wall / 3600})
        print(rows[-1], flush=True)
    return {"size": "paper preset (C=16, 8 cells, batch 64, DFS ratio 2, first order), "
            "25,000 + 25,000 images", "rows": rows,
            "note": "wall_s includes start-up, the epoch's evaluation and the final derivation"}


def _table(rows: list[dict], keys: list[str]) -> list[str]:
    def cell(v):
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    return ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)] + [
        "| " + " | ".join(cell(r.get(k, "")) for k in keys) + " |" for r in rows]


def section_report(args) -> dict:
    out, lines = Path(args.out), ["# Device check", ""]
    for path in sorted(out.glob("*.json")):
        data = json.loads(path.read_text())
        lines += [f"## {path.stem}", ""]
        for key, value in data.items():
            if isinstance(value, list) and value and isinstance(value[0], dict):
                keys = list(dict.fromkeys(k for r in value for k in r))
                lines += [f"{key}:", "", *_table(value, keys), ""]
            else:
                lines += [f"- {key}: {json.dumps(value)}"]
        lines.append("")
    (out / "device_check.md").write_text("\n".join(lines) + "\n")
    return {}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("section", choices=["epoch", "report"])
    ap.add_argument("--out", required=True)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--data", help="the CIFAR-10 subset (an ImageFolder with train/)")
    ap.add_argument("--work", default="/tmp/dfs-device-check", help="scratch folder")
    ap.add_argument("--algo", action="append", default=[],
                    help="also search with --algo ALGO (repeatable)")
    args = ap.parse_args()
    Path(args.out).mkdir(parents=True, exist_ok=True)
    if args.section == "report":
        section_report(args)
        return
    result = {"date": time.strftime("%Y-%m-%d"), **section_epoch(args)}
    Path(args.out, "epoch.json").write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
