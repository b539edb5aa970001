"""`python -m search` (and torchrun ... -m search): the search command line."""

from common.cpu import prefer_passive_openmp

# Before torch loads OpenMP: idle OpenMP threads sleep instead of spinning. On a CPU shared
# with other processes (or torchrun workers sharing cores) spinning threads starve the ones
# doing work, and a 2-thread convolution became 10x slower than a 1-thread one.
prefer_passive_openmp()

from search.cli import main  # noqa: E402

if __name__ == "__main__":
    main()
