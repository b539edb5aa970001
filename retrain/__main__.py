"""`python -m retrain` (see retrain.cli)."""

import sys

from common.cpu import prefer_passive_openmp

# Before torch loads OpenMP (see search/__main__.py): beside one busy process, spinning idle
# threads made a smoke retrain epoch 30x slower.
prefer_passive_openmp()

from retrain.cli import main  # noqa: E402

sys.exit(main())
