"""The `smoke` preset end to end on real CIFAR-10 images (../shared/data/cifar10-subset):
a complete run directory, a valid genotype, and a network that learns (above chance)."""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import pytest
import yaml
from doc_samples import OMITTED, matches, sample_of

from common.checkpoint import load_checkpoint
from genotypes import FSSpec, load_genotype, validate

ROOT = Path(__file__).resolve().parents[1]
KEYS = {"epoch", "train_loss", "train_acc", "valid_loss", "valid_acc", "lr", "alphas_normal",
        "alphas_reduce", "offset_entropy", "temperature", "genotype", "seconds", "images_per_s"}


#: The README's quick-start command (its sample output is checked below).
README_SEARCH = ("./run_search.sh ../shared/data/cifar10-subset --preset smoke --threads 2 "
                 "--out /tmp/search-smoke")


@pytest.mark.slow
def test_smoke_preset_on_cifar_subset(cifar_subset, tmp_path):
    run = tmp_path / "run"
    argv = README_SEARCH.split()
    dataset, out = argv[1], argv[argv.index("--out") + 1]
    r = subprocess.run([str(ROOT / "run_search.sh"), str(cifar_subset), *argv[2:-2],
                        "--out", str(run)], cwd=tmp_path, capture_output=True, text=True,
                       timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "10 classes, 32x32" in r.stdout
    # The README's sample: the same lines, figures and genotype aside (they are the machine's).
    lines = [x.replace(str(run), out).replace(str(cifar_subset), dataset)
             .replace(str(ROOT), "/path/to/DFSNet-DARTS")
             for x in r.stdout.splitlines() if not OMITTED.match(x)]
    problem = matches(sample_of(README_SEARCH), lines, mask=True)
    assert problem is None, problem

    g = validate(load_genotype(run / "genotype.json"))
    assert g.fs == FSSpec(ratio=2.0, dfs=True, num_offsets=4)
    records = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    assert len(records) >= 1 and KEYS <= set(records[-1])
    last = records[-1]
    # 10 classes: chance is 10%. Three epochs reach about 28% / 22% here.
    assert last["train_acc"] > 15.0, f"the smoke preset did not learn: {last['train_acc']:.2f}%"
    assert last["valid_acc"] > 12.0, f"no better than chance on held-out: {last['valid_acc']:.2f}%"
    assert last["train_loss"] < records[0]["train_loss"]
    assert all(math.isfinite(last[k]) for k in ("train_loss", "valid_loss", "offset_entropy"))
    assert load_genotype(json.dumps(last["genotype"])) == g
    state = load_checkpoint(run / "checkpoint.pt", "search")
    assert state["epoch"] == len(records)
    for e in range(len(records)):
        validate(load_genotype(run / "genotypes" / f"epoch-{e:03d}.json"))
    cells = {p.name for p in (run / "cells").iterdir()}
    assert {"normal.png", "reduce.png"} <= cells or {"normal.gv", "reduce.gv"} <= cells
    assert (run / "plots" / "curves.png").is_file()
    assert (run / "config.yaml").is_file()
    assert (f"python -m retrain --genotype {run / 'genotype.json'} --dataset {cifar_subset} "
            "--preset smoke --threads 2\n") in r.stdout  # a smoke retrain, not the 600-epoch
    # paper one, with the threads the search was given
    assert yaml.safe_load((run / "config.yaml").read_text())["command"].startswith(
        f"{ROOT / 'run_search.sh'} {cifar_subset} --preset smoke")  # as it was started
