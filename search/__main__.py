"""`python -m search` (and torchrun ... -m search): the search command line."""

import os

# Before torch loads OpenMP: idle OpenMP threads sleep instead of spinning. On a CPU shared
# with other processes (or torchrun workers sharing cores) spinning threads starve the ones
# doing work, and a 2-thread convolution became 10x slower than a 1-thread one.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from search.cli import main  # noqa: E402

if __name__ == "__main__":
    main()
