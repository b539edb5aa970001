#!/usr/bin/env bash
# CI step (.ci/run, after ./run_tests.sh): the project as a user installs it. Builds a wheel
# with the project venv's own setuptools (no build dependencies fetched), installs it into a
# fresh venv in a temporary folder, and from a folder outside the checkout runs every console
# script: --help, --print-config of each packaged preset, --summary of a zoo genotype, a tiny
# search and a tiny retrain on the CIFAR-10 subset, the export and evaluation of that model,
# and a study's dry run. Fails if the checkout is importable there.
#
# The fresh venv reuses the project venv's installed dependencies (torch, ...) through a folder
# of links named in a .pth file, leaving out the project's own editable install (its
# finder, .pth and metadata), so nothing is downloaded and nothing of the checkout leaks in.
#   tools/wheel_smoke.sh            # 1 min 46 s on a shared 2-core CPU (2026-12-06)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/tools/bootstrap.sh"   # the project venv: DFS_PYTHON
SUBSET="$(cd "${DFS_CIFAR_SUBSET:-$ROOT/../shared/data/cifar10-subset}" 2>/dev/null && pwd)" || {
    echo "error: the CIFAR-10 subset is missing (../shared/data/cifar10-subset beside the repo, or set DFS_CIFAR_SUBSET)" >&2
    exit 1; }
command -v git >/dev/null || { echo "error: git is needed to list the checkout's files" >&2; exit 1; }
TMP="$(mktemp -d "${TMPDIR:-/tmp}/dfsnet-wheel.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT   # the folder this script made, nothing else
step() { printf '%s  %s\n' "$(date +%T)" "$*"; }

# 1. The wheel, built from a copy of the files git knows (tracked, or new and not ignored):
#    an in-place build would write build/ into the checkout, whose stale files can end up
#    in the wheel.
step "building the wheel"
mkdir "$TMP/src" "$TMP/dist" "$TMP/deps" "$TMP/work"
(cd "$ROOT" && git ls-files -z -co --exclude-standard \
    | while IFS= read -r -d '' f; do [[ -e $f ]] && printf '%s\0' "$f"; done \
    | tar --null -T - -cf -) | tar -xf - -C "$TMP/src"
"$DFS_PYTHON" -m pip wheel -q --disable-pip-version-check --no-deps --no-build-isolation \
    -w "$TMP/dist" "$TMP/src" >/dev/null
WHEEL="$(ls "$TMP"/dist/dfsnet_darts-*.whl)"

# 2. A fresh venv; the project venv's packages as links, less the project itself.
step "installing $(basename "$WHEEL") into a fresh venv"
"$DFS_PYTHON" -m venv --without-pip "$TMP/venv"
PY="$TMP/venv/bin/python"
site_of() { "$1" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'; }
OLD_SITE="$(site_of "$DFS_PYTHON")"
NEW_SITE="$(site_of "$PY")"
for entry in "$OLD_SITE"/*; do
    case "$(basename "$entry")" in
        __editable__*|dfsnet_darts*|*.pth|__pycache__) ;;
        common|genotypes|retrain|search|space|study) ;;   # a non-editable install's packages
        *) ln -s "$entry" "$TMP/deps/" ;;
    esac
done
echo "$TMP/deps" > "$NEW_SITE/_dfsnet_smoke_deps.pth"
# The project venv's pip (one of the links) run by the fresh interpreter installs into it.
"$PY" -m pip install -q --disable-pip-version-check --no-deps --no-index "$WHEEL" >/dev/null

# 3. From a folder outside the checkout, with nothing pointing into it.
cd "$TMP/work"
unset PYTHONPATH
export PYTHONNOUSERSITE=1 PATH="$TMP/venv/bin:$PATH"
step "checking that the install, not the checkout, is imported"
ROOT="$ROOT" NEW_SITE="$NEW_SITE" "$PY" - <<'EOF'
import importlib, importlib.metadata as md, os, sys
root, site = os.environ["ROOT"], os.path.realpath(os.environ["NEW_SITE"])
for name in ("common", "genotypes", "retrain", "search", "space", "study"):
    path = os.path.realpath(importlib.import_module(name).__file__)
    if not path.startswith(site + os.sep):
        sys.exit(f"error: {name} is imported from {path}, not from the installed wheel in {site}")
if any(os.path.realpath(p or os.getcwd()) == root for p in sys.path):
    sys.exit(f"error: the checkout {root} is on sys.path")
dist = md.distribution("dfsnet-darts")
if not os.path.realpath(str(dist.locate_file(""))).startswith(site):
    sys.exit(f"error: dfsnet-darts metadata found outside the fresh venv: {dist.locate_file('')}")
from common.config import available_presets
checkout = sorted(f[:-5] for f in os.listdir(os.path.join(root, "configs")) if f.endswith(".yaml"))
if available_presets() != checkout:
    sys.exit(f"error: the wheel has presets {available_presets()}, the checkout's configs/ {checkout}: "
             "a preset goes into common/presets/ (python -m common.preset_files --write copies it)")
import search
print(f"search.__file__ = {search.__file__}")
EOF
SCRIPTS=($("$PY" -c 'import importlib.metadata as md
print(" ".join(sorted(e.name for e in md.distribution("dfsnet-darts").entry_points if e.group == "console_scripts")))'))
WANT=(dfsnet-evaluate dfsnet-export dfsnet-genotypes dfsnet-retrain dfsnet-search dfsnet-study)
[[ "${SCRIPTS[*]}" == "${WANT[*]}" ]] || { echo "error: console scripts ${SCRIPTS[*]}, expected ${WANT[*]}" >&2; exit 1; }

step "--help of ${SCRIPTS[*]}"
for s in "${SCRIPTS[@]}"; do "$s" --help >/dev/null; done
step "--print-config of the presets: $(ls "$ROOT"/configs/*.yaml | xargs -n1 basename | sed 's/\.yaml$//' | xargs)"
for f in "$ROOT"/configs/*.yaml; do
    p="$(basename "$f" .yaml)"
    dfsnet-search cifar10 --preset "$p" --print-config >/dev/null
    dfsnet-retrain --preset "$p" --print-config >/dev/null
done
step "zoo genotype: show, --summary (preset paper)"
dfsnet-genotypes show DARTS_V2 >/dev/null
dfsnet-retrain --genotype DARTS_V2 --summary | tail -n 1

TINY=(--preset smoke --epochs 1 --threads 1 --set init_channels=4 --set layers=3 --set batch_size=16)
step "tiny search on $SUBSET"
dfsnet-search "$SUBSET" "${TINY[@]}" --set data.max_images=40 --set runtime.plot=false --out search >/dev/null
[[ -f search/genotype.json ]] || { echo "error: the search wrote no genotype.json" >&2; exit 1; }
step "tiny retrain of its genotype, export, evaluation"
dfsnet-retrain --genotype search --dataset "$SUBSET" "${TINY[@]}" --set data.max_images=40 \
    --set data.max_test_images=20 --out retrain >/dev/null
[[ -f retrain/model.onnx && -f retrain/metrics.json ]] || { echo "error: the retrain wrote no model.onnx/metrics.json" >&2; exit 1; }
dfsnet-export retrain --onnx --wq >/dev/null
dfsnet-evaluate retrain/model-wq.onnx --dataset "$SUBSET" --test-limit 20 --threads 1

step "a study's dry run (presets by name)"
cat > study.yaml <<EOF
name: wheel-smoke
dataset: $SUBSET
out: study-out
seeds: [0]
defaults: {genotype: DARTS_V2, preset: smoke}
arms:
  - {name: plain, fs: "off"}
  - {name: searched, search: {preset: proxy}}
EOF
dfsnet-study run study.yaml --dry-run >/dev/null
step "wheel smoke test passed"
