"""`python -m retrain` (see retrain.cli)."""

import sys

from common.cpu import choose_openmp_wait_policy

# Before torch loads OpenMP (see search/__main__.py): beside one busy process, spinning idle
# threads made a smoke retrain epoch 30x slower; on free cores spinning is 1.75x faster.
choose_openmp_wait_policy()

from retrain.cli import main  # noqa: E402  (also the dfsnet-retrain console script's)

if __name__ == "__main__":
    sys.exit(main())
