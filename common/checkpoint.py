"""Atomic checkpoints, RNG state capture, and loading with one clear error per problem."""

from __future__ import annotations

import io
import random
import shlex
from pathlib import Path
from typing import Any

import torch

from common.errors import UserError
from common.files import atomic_write_bytes
from common.runlog import start_again

FORMAT = "dfsnet-darts"


class UnreadableCheckpoint(UserError):
    """A file that is not an intact checkpoint of this project; `reason` says why, without
    the advice the message ends with."""

    def __init__(self, path: Path, reason: str, advice: str) -> None:
        super().__init__(f"{path} {reason}; {advice}")
        self.path, self.reason = Path(path), reason


def save_checkpoint(state: dict[str, Any], path: Path, kind: str) -> None:
    """Save `state` atomically, tagged with the project format and a `kind` (e.g. "search")."""
    buf = io.BytesIO()
    torch.save({"format": FORMAT, "kind": kind, **state}, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: Path, kind: str | None = None) -> dict[str, Any]:
    """Load a checkpoint written by `save_checkpoint`, refusing corrupt or foreign files."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist; check the path")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for truncated / non-zip / pickled files
        # torch's own messages run to paragraphs; the exception type is enough to tell them apart.
        raise UnreadableCheckpoint(
            path, f"is not a readable checkpoint (corrupt, truncated, or not a torch file saved "
            f"by this project: {type(e).__name__})", "use another file") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise UnreadableCheckpoint(path, "is not a DFSNet-DARTS checkpoint",
                                   "give a file this project wrote")
    if kind is not None and state.get("kind") != kind:
        raise UserError(
            f"{path} is a {state.get('kind')!r} checkpoint, not a {kind!r} one; give the right file"
        )
    return state


def load_resume_checkpoint(run_dir: Path, name: str, kind: str,
                           older: str | None = None) -> dict[str, Any]:
    """`load_checkpoint(run_dir / name)` for --resume RUN_DIR: when that file is unreadable,
    the one-line error names it and says what to do: copy `older` (another checkpoint the
    run keeps, e.g. retrain's best.pt) over it when that one is intact, or start again."""
    run_dir = Path(run_dir)
    path = run_dir / name
    try:
        return load_checkpoint(path, kind)
    except UnreadableCheckpoint as e:
        advice = start_again(run_dir)
        if older and (run_dir / older).is_file():
            try:
                epoch = int(load_checkpoint(run_dir / older, kind)["epoch"])
                advice = (f"`cp {shlex.quote(str(run_dir / older))} {shlex.quote(str(path))}` "
                          f"then --resume continues at epoch {epoch + 1}; or {advice}")
            except UserError:
                pass
        raise UserError(f"cannot resume {run_dir}: {path.name} {e.reason}; {advice}") from None


def rng_state() -> dict[str, Any]:
    """Every RNG the training loops draw from, so a resumed run continues the same streams."""
    state = {
        "python": list(random.getstate()[1]) + [random.getstate()[2] or 0],
        "python_version": random.getstate()[0],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        # This process's device only: a run computes on one GPU per process, and a list of
        # every visible GPU's state could not be restored on a machine with fewer.
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    inner = state["python"]
    random.setstate((state["python_version"], tuple(inner[:-1]), inner[-1] or None))
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available():
        if isinstance(cuda, list | tuple):  # every visible GPU's, as earlier checkpoints hold
            if not cuda:
                return
            cuda = cuda[min(torch.cuda.current_device(), len(cuda) - 1)]
        torch.cuda.set_rng_state(cuda)


def check_resume_device(state: dict[str, Any], run_dir: Path, device: torch.device,
                        precision: str) -> None:
    """Refuse to resume a run on another kind of device or in another precision (the
    checkpoint's `device` and `precision`, common.runtime.precision): AMP would switch on or
    off silently, an fp16 GradScaler cannot load a bf16 or fp32 run's state, and the
    arithmetic would change mid-run. Checkpoints without the record are not checked."""
    saved_device, saved_precision = state.get("device"), state.get("precision")
    if saved_device is None:
        return
    if (saved_device, saved_precision) != (device.type, precision):
        raise UserError(
            f"cannot resume {run_dir}: it ran on {saved_device} in {saved_precision} and would "
            f"continue on {device.type} in {precision}; resume it with --device {saved_device} "
            f"on a machine that computes in {saved_precision}, or start again")
