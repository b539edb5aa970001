#!/usr/bin/env bash
# Set up the environment on first use, then run the whole test suite (real-data tests included).
# Extra arguments go to pytest, e.g. ./run_tests.sh -m "not slow" -x
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
source tools/bootstrap.sh
"$DFS_PYTHON" -m ruff check .
exec "$DFS_PYTHON" -m pytest "$@"
