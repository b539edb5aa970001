"""Start-up checks of an ImageFolder dataset, before any run directory exists.

A bad file would otherwise surface mid-training (or at the end of the first epoch, in the
test pass) as a traceback that does not name it, and again on every rerun. So, once per
start:

- `check_links`: every symlink in a split must stay inside the split's folder and must not
  loop (torchvision follows links: a loop multiplies a class, a link out of test/ into
  train/ makes the test set partly training images). Refused before the tree is listed.
- `check_images`: every image file is opened; up to FULL_DECODE_LIMIT images (the CIFAR-10
  subset, CIFAR-10 as a folder) each one is decoded in full, since a broken data stream is
  only found by decoding; above it (ImageNet) the header alone is read, as a full decode
  would take hours. Every bad file is named, all in one line.
- train and test share no file: the same file (a hard or symbolic link) or, where images
  are decoded, the same bytes.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from common.errors import UserError

#: Splits of at most this many images (train and test together) are decoded in full: 0.44 s
#: for the 6,102-image subset (docs/usage.md#datasets); a header read is the check above it.
FULL_DECODE_LIMIT = 100_000
#: Paths a one-line message names before it says "and N more".
SHOWN = 20


def _listing(items: Sequence[str], what: str) -> str:
    shown = ", ".join(items[:SHOWN])
    return shown + (f" and {len(items) - SHOWN} more {what}" if len(items) > SHOWN else "")


def check_links(split: Path) -> None:
    """Refuse symlinks under `split` that point outside it, dangle, or loop (a folder link to
    a folder above it, directly or through other links); one line names them all."""
    root = split.resolve()
    bad: list[str] = []

    def walk(folder: Path, above: tuple[Path, ...]) -> None:
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as e:
            bad.append(f"{folder} ({e.strerror})")
            return
        for entry in entries:
            path = Path(entry.path)
            if entry.is_symlink():
                try:
                    target = path.resolve(strict=True)
                except (OSError, RuntimeError):  # dangling, or a loop of links to links
                    bad.append(f"{path} (a broken or looping link)")
                    continue
                if not target.is_relative_to(root):
                    bad.append(f"{path} (-> {target}, outside {split})")
                    continue
                if target.is_dir() and target in above:
                    bad.append(f"{path} (-> {target}, a loop)")
                    continue
            if entry.is_dir(follow_symlinks=True):
                walk(path, (*above, path.resolve()))

    walk(split, (root,))
    if bad:
        raise UserError(f"{split} has {len(bad)} symlink(s) that leave it or loop: "
                        f"{_listing(bad, 'links')}; remove them (or copy the files in), then run "
                        "again")


def _read(path: str, decode: bool) -> tuple[str | None, tuple | str]:
    """(what is wrong with the image file or None, its identity: the content's digest when
    decoded, else (device, inode), which a hard or symbolic link shares)."""
    try:
        st = os.stat(path)
        if st.st_size == 0:
            return "0 bytes", ""
        if not decode:
            with Image.open(path):  # the header: format, size, mode
                pass
            return None, (st.st_dev, st.st_ino)
        with open(path, "rb") as f:
            data = f.read()
        with Image.open(io.BytesIO(data)) as im:
            im.load()
        return None, hashlib.blake2b(data, digest_size=16).hexdigest()
    except Exception as e:  # PIL raises OSError, SyntaxError, ValueError, ... for bad files
        text = str(e).strip().splitlines()
        return (text[0][:80] if text else type(e).__name__), ""


def check_images(root: Path, train: Sequence[str], test: Sequence[str] | None) -> None:
    """Open (or decode, see FULL_DECODE_LIMIT) every image of the train and test splits, and
    refuse unreadable or empty files, all named in one line, then files the two splits
    share. Paths are shown relative to the dataset folder `root`."""
    test = list(test or [])
    decode = len(train) + len(test) <= FULL_DECODE_LIMIT

    def rel(p: str) -> str:
        return os.path.relpath(p, root)

    bad: list[str] = []
    seen: dict[object, str] = {}
    shared: list[str] = []
    for split, paths in (("train", train), ("test", test)):
        for path in paths:
            problem, key = _read(path, decode)
            if problem is not None:
                bad.append(f"{rel(path)} ({problem})")
            elif split == "train":
                seen.setdefault(key, path)
            elif key in seen:
                shared.append(f"{rel(path)} = {rel(seen[key])}")
    if bad:
        raise UserError(f"{len(bad)} image file(s) of {root} cannot be read: "
                        f"{_listing(bad, 'files')}; remove or replace them, then run again")
    if shared:
        raise UserError(f"{len(shared)} test image(s) of {root} are also training images "
                        f"({_listing(sorted(set(shared)), 'images')}): the test accuracy would "
                        "be measured partly on training images; remove them from one split")

