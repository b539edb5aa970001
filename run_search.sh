#!/usr/bin/env bash
# DFSNet-DARTS architecture search. Usage: ./run_search.sh DATASET [options]  (see --help)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/tools/bootstrap.sh"
exec "$DFS_PYTHON" -m search "$@"
