"""`python -m study.child MODULE ARGS...`: run `python -m MODULE ARGS...` so that it dies
with the study that started it.

A study killed outright (SIGKILL, or SIGTERM) cannot stop its runs itself; a run left going
would still be writing its folder when the study is started again and resumes it. On Linux
the launcher asks the kernel for SIGTERM when its parent dies (prctl PR_SET_PDEATHSIG) and
then runs the module in this same process, exactly as `python -m MODULE` does. Elsewhere it
only runs the module.
"""

from __future__ import annotations

import ctypes
import os
import runpy
import signal
import sys

PARENT_ENV = "DFS_STUDY_PARENT"
_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Ask for SIGTERM when the parent process exits (Linux); exit now if it already has."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    except (OSError, AttributeError):
        return
    parent = os.environ.get(PARENT_ENV)
    if parent and os.getppid() != int(parent):  # the study died before prctl took effect
        sys.exit(143)


def main() -> None:
    if len(sys.argv) < 2:
        sys.exit("usage: python -m study.child MODULE [ARGS...]")
    die_with_parent()
    if os.environ.get("SUBMITIT_EXECUTOR") and hasattr(signal, "SIGUSR2"):
        # In a SLURM job (study.slurm) the time-limit warning, USR2, reaches every process of
        # the job; it is the job's to handle (requeue), and would otherwise kill this run.
        signal.signal(signal.SIGUSR2, signal.SIG_IGN)
    module, args = sys.argv[1], sys.argv[2:]
    sys.argv = [module, *args]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
