"""`python -m search` (and torchrun ... -m search): the search command line."""

from common.cpu import choose_openmp_wait_policy

# Before torch loads OpenMP: on a CPU shared with other processes (or torchrun workers sharing
# cores) idle OpenMP threads must sleep, or their spinning starves the ones doing work (a
# 2-thread convolution became 10x slower than a 1-thread one); on free cores they may spin,
# which is faster (common/cpu.py).
choose_openmp_wait_policy()

from search.cli import main  # noqa: E402  (also the dfsnet-search console script's)

if __name__ == "__main__":
    main()
