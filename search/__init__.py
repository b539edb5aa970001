"""The DARTS bilevel search over FS/DFS convolutions.

cli (command line) -> data (search halves, reproducible loaders) -> trainer (one epoch:
architect step, weight step) -> run (epoch loop) -> outputs (run directory). architect holds
the first/second-order architecture gradient; settings checks a config; ddp the torchrun
set-up helpers. Importing this package imports no torch (so `python -m search` can set
OpenMP's environment first).
"""
