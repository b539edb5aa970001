#!/usr/bin/env bash
# Create and fill the project's virtual environment (.venv) on first use, or when
# pyproject.toml / constraints.txt changed since the last install. Sourced by the
# top-level scripts; prints the interpreter path on stdout when run directly.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${DFS_VENV:-$root/.venv}"
stamp="$venv/.dfsnet-install-stamp"
want="$(cat "$root/pyproject.toml" "$root/constraints.txt" | sha256sum | cut -d' ' -f1)"
if [[ ! -x "$venv/bin/python" ]] || [[ "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
    py="${PYTHON:-python3}"
    if ! command -v "$py" >/dev/null 2>&1; then
        echo "error: $py not found; install Python >= 3.10 (or set PYTHON=/path/to/python3)" >&2
        exit 1
    fi
    echo "setting up $venv (first run: installs torch, torchvision and the project) ..." >&2
    [[ -x "$venv/bin/python" ]] || "$py" -m venv "$venv"
    "$venv/bin/python" -m pip install -q --upgrade pip >&2
    "$venv/bin/python" -m pip install -q -c "$root/constraints.txt" torch torchvision >&2
    "$venv/bin/python" -m pip install -q -c "$root/constraints.txt" -e "$root[dev]" >&2
    echo "$want" > "$stamp"
fi
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    echo "$venv/bin/python"
fi
DFS_PYTHON="$venv/bin/python"
export DFS_PYTHON
