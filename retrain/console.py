"""Console-script entry points (pyproject's [project.scripts]) of retrain's evaluation and
export commands. Each chooses the OpenMP wait policy before torch loads, as `python -m
retrain.evaluate` does in its `__main__` block (which a console script never runs): beside one
busy process, spinning idle threads made CPU runs 10-30x slower (common.cpu)."""

from __future__ import annotations

from common.cpu import choose_openmp_wait_policy


def evaluate(argv: list[str] | None = None) -> int:
    """dfsnet-evaluate: `python -m retrain.evaluate`."""
    choose_openmp_wait_policy()
    from retrain.evaluate import main

    return main(argv)


def export(argv: list[str] | None = None) -> int:
    """dfsnet-export: `python -m retrain.export` (retrain.onnx_cli)."""
    choose_openmp_wait_policy()
    from retrain.onnx_cli import main

    return main(argv)
