#!/usr/bin/env bash
# Create and fill the project's virtual environment (.venv) on first use, or again when
# pyproject.toml / constraints.txt changed since the last install. Sourced by the top-level
# scripts (sets DFS_PYTHON); run directly it prints the interpreter path.
set -euo pipefail
_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_venv="${DFS_VENV:-$_root/.venv}"
_want="$(cat "$_root/pyproject.toml" "$_root/constraints.txt" | sha256sum | cut -d' ' -f1)"
_ready() { [[ -x "$_venv/bin/python" && "$(cat "$_venv/.install-stamp" 2>/dev/null)" == "$_want" ]]; }
if ! _ready; then
    _py="${PYTHON:-python3}"
    if ! command -v "$_py" >/dev/null 2>&1; then
        echo "error: $_py not found; install Python >= 3.10 or set PYTHON=/path/to/python3" >&2
        exit 1
    fi
    mkdir -p "$_venv"
    # One installer at a time: parallel first runs (two terminals, CI jobs) wait for each other.
    exec 9>"$_venv/.install-lock"
    flock 9
    if ! _ready; then
        echo "setting up $_venv (first run installs torch, torchvision and the project; a few minutes) ..." >&2
        [[ -x "$_venv/bin/python" ]] || "$_py" -m venv "$_venv"
        _pip=("$_venv/bin/python" -m pip install -q --disable-pip-version-check -c "$_root/constraints.txt")
        # pip's warnings about unreachable local index mirrors are noise; real errors still show.
        "${_pip[@]}" torch torchvision 2> >(grep -v '^WARNING: Location' >&2)
        "${_pip[@]}" -e "$_root[dev]" 2> >(grep -v -e '^WARNING: Location' >&2)
        echo "$_want" > "$_venv/.install-stamp"
        echo "environment ready: $_venv" >&2
    fi
    flock -u 9
    exec 9>&-
fi
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    echo "$_venv/bin/python"
fi
export DFS_PYTHON="$_venv/bin/python"
