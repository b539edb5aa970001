#!/usr/bin/env bash
# DFSNet-DARTS architecture search. Usage: ./run_search.sh DATASET [options]  (see --help)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/tools/bootstrap.sh"
# config.yaml records the command as typed (./run_search.sh ...), not as python -m search.
export DFS_LAUNCHER="$0"
exec "$DFS_PYTHON" -m search "$@"
