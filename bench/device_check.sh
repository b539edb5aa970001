#!/usr/bin/env bash
# The first run on a GPU, in one script (at most 8 minutes on one GPU, BUDGET_S): the CUDA-marked tests,
# the search and retrain step figures (bench/gpu_steps.py), the CPU step bench
# (bench/search_step.py), a torchrun smoke search, and one search epoch on a CIFAR-10-sized
# set with its 50-epoch extrapolation (bench/device_epoch.py). JSON, logs and device_check.md
# go to $OUT (default ./device-check).
#
#   OUT=/tmp/out bash bench/device_check.sh [SUBSET]
#
# SUBSET: the CIFAR-10 subset (ImageFolder); default $DFS_CIFAR_SUBSET, then
# ../shared/data/cifar10-subset, then shared/data/cifar10-subset. Without it the
# data-dependent parts are skipped with a line saying so.
# PYTHON: an interpreter with torch and the project's dependencies; default: the project's
# .venv, made by tools/bootstrap.sh. REFERENCE: a quark0/darts checkout's cnn/ directory, in
# an ignored folder (default: reference/darts/cnn or shared/darts/cnn when present).
# Without a GPU (no nvidia-smi listing one, or a torch that sees none) it says so and exits 0
# without writing any figures.
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root" || exit 1

gpus=$("${NVIDIA_SMI:-nvidia-smi}" -L 2>/dev/null | grep '^GPU' || true)
if [[ -z "$gpus" ]]; then
    echo "device_check: no CUDA GPU on this machine (nvidia-smi lists none); nothing measured, no figures written"
    exit 0
fi
if [[ -n "${PYTHON:-}" ]]; then
    py=$PYTHON
elif ! py=$(bash tools/bootstrap.sh); then
    echo "device_check: tools/bootstrap.sh could not make the environment; set PYTHON=/path/to/python with torch" >&2
    exit 1
fi
if ! "$py" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    echo "device_check: nvidia-smi lists ${gpus%%$'\n'*} but torch ($py) sees no CUDA device; nothing measured, no figures written"
    exit 0
fi

out=${OUT:-$root/device-check}
mkdir -p "$out"
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
work=$(mktemp -d /tmp/dfs-device-check.XXXXXX)
say() { echo "device_check: $*" | tee -a "$out/device_check.log"; }
# All steps together stay within BUDGET_S seconds (default 480: 8 minutes), the most
# important first; a step gets at most its own limit and what is left of the budget.
budget=${BUDGET_S:-480}
end=$((SECONDS + budget))
# step NAME SECONDS CMD...: run CMD with a time limit, its output in $OUT/NAME.log, its exit
# status and time in $OUT/steps.jsonl.
step() {
    local name=$1 limit=$2 t0=$SECONDS rc left=$((end - SECONDS))
    shift 2
    if ((left < 20)); then
        say "$name: skipped (the ${budget}s budget is spent)"
        printf '{"step": "%s", "rc": null, "seconds": 0}\n' "$name" >>"$out/steps.jsonl"
        return
    fi
    ((limit > left)) && limit=$left
    say "$name (at most ${limit}s) ..."
    timeout "$limit" "$@" >"$out/$name.log" 2>&1
    rc=$?
    printf '{"step": "%s", "rc": %d, "seconds": %d}\n' "$name" "$rc" $((SECONDS - t0)) >>"$out/steps.jsonl"
    say "$name: exit $rc after $((SECONDS - t0))s$([[ $rc == 124 ]] && echo ' (time limit)')"
}

data=${1:-${DFS_CIFAR_SUBSET:-}}
for candidate in "$data" ../shared/data/cifar10-subset shared/data/cifar10-subset; do
    if [[ -n "$candidate" && -d "$candidate/train" ]]; then data=$candidate; break; fi
    data=""
done
ref=${REFERENCE:-}
for candidate in "$ref" reference/darts/cnn shared/darts/cnn; do
    if [[ -n "$candidate" && -f "$candidate/model_search.py" ]]; then ref=$candidate; break; fi
    ref=""
done
say "$(date -u '+%Y-%m-%d %H:%M UTC'); $gpus; torch $("$py" -c 'import torch; print(torch.__version__)')"
say "subset: ${data:-none found (data-dependent parts skipped)}; reference: ${ref:-none}"

step tests 90 "$py" -m pytest -q -m cuda -p no:cacheprovider tests --junitxml="$out/tests.xml"
step search 120 "$py" bench/gpu_steps.py search --out "$out"
step retrain 75 "$py" bench/gpu_steps.py retrain --out "$out"
step precision 45 "$py" bench/gpu_steps.py precision --out "$out"
algos=()
[[ "$("$py" -m search --help 2>/dev/null)" == *--algo* ]] && algos=(--algo pc-darts)
if [[ -n "$data" ]]; then
    step epoch 240 "$py" bench/device_epoch.py epoch --out "$out" --data "$data" --work "$work" "${algos[@]}"
    step torchrun_smoke 90 "$py" -m torch.distributed.run --nproc_per_node 1 -m search "$data" \
        --preset smoke --epochs 1 --device cuda --no-download --out "$work/smoke" --overwrite \
        --set runtime.plot=false
else
    say "search epoch and torchrun smoke search: no CIFAR-10 subset (give its path); skipped"
fi
step determinism 45 "$py" bench/gpu_steps.py determinism --out "$out"
if [[ -n "$ref" ]]; then
    step reference 60 "$py" bench/gpu_steps.py reference --out "$out" --reference "$ref"
else
    say "reference: no quark0/darts cnn/ directory (REFERENCE); skipped"
fi
# The CPU bench with its own flags (on CUDA too once it offers --device), and PC-DARTS once
# it offers --algo.
help=$("$py" bench/search_step.py --help 2>/dev/null)
bench=(bench/search_step.py --order 1 --fs dfs --steps 2 --threads 8)
[[ "$help" == *--device* ]] && bench+=(--device cuda)
[[ -n "$ref" ]] && bench+=(--reference "$ref")
step search_step 60 "$py" "${bench[@]}"
if [[ "$help" == *--algo* ]]; then
    step search_step_pc_darts 60 "$py" "${bench[@]}" --algo pc-darts
fi
"$py" bench/device_epoch.py report --out "$out"
say "figures in $out (device_check.md, *.json, *.log)"
rm -rf "$work"
