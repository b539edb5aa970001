"""The named presets (`--preset NAME`): YAML files shipped inside this package, in
common/presets/NAME.yaml, and read through importlib.resources, so that an installed copy
(a wheel, `pip install .`) finds them wherever it runs, not only inside a checkout.

common/presets/ is the one copy the code reads: a new preset goes there. The checkout's
configs/ holds byte-identical copies for people browsing the repository;

    python -m common.preset_files --write     # refresh configs/ from common/presets/

and tests/test_packaging.py checks that the two agree.
"""

from __future__ import annotations

import sys
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from common.errors import UserError, cli_entry

if TYPE_CHECKING:  # importlib.resources.abc is 3.11+; annotations only
    from importlib.resources.abc import Traversable

FOLDER = "presets"
SUFFIX = ".yaml"
#: The checkout's copies (see the module docstring); absent in an installed copy.
CHECKOUT_COPIES = "configs"


def preset_folder() -> Traversable:
    """The packaged presets' folder (a plain directory for an ordinary install)."""
    return resources.files("common") / FOLDER


def available_presets() -> list[str]:
    """The names of the packaged presets, sorted."""
    folder = preset_folder()
    if not folder.is_dir():
        return []
    return sorted(p.name[: -len(SUFFIX)] for p in folder.iterdir()
                  if p.name.endswith(SUFFIX) and p.is_file())


def packaged_preset(name: str) -> Traversable | None:
    """The packaged preset `name`, or None when there is none by that name."""
    if not name or "/" in name or "\\" in name or name.startswith("."):
        return None
    path = preset_folder() / f"{name}{SUFFIX}"
    return path if path.is_file() else None


def checkout_root() -> Path:
    """The repository this package runs from; a UserError for an installed copy, which has
    no configs/ or docs/ to write (the generators write a checkout's files only)."""
    root = Path(__file__).resolve().parents[1]
    if not (root / "pyproject.toml").is_file():
        raise UserError(f"{root} is not a checkout of the repository (no pyproject.toml): "
                        "the generated files are written in a clone; run this command there")
    return root


def write_checkout_copies(root: Path) -> list[Path]:
    """Copy every packaged preset to ROOT/configs/ (only those whose text differs) and return
    the files written. A configs/ file with no packaged preset is left alone (someone's work,
    perhaps a new preset put in the wrong folder): tests/test_packaging.py names it."""
    out = root / CHECKOUT_COPIES
    out.mkdir(exist_ok=True)
    written = []
    for name in available_presets():
        text = (preset_folder() / f"{name}{SUFFIX}").read_text()
        dst = out / f"{name}{SUFFIX}"
        if not dst.is_file() or dst.read_text() != text:
            dst.write_text(text)
            written.append(dst)
    return written


@cli_entry
def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv != ["--write"]:
        raise UserError("usage: python -m common.preset_files --write (copies common/presets/*.yaml "
                        "into the checkout's configs/)")
    root = checkout_root()
    written = write_checkout_copies(root)
    print("wrote " + (", ".join(str(p.relative_to(root)) for p in written) if written
                      else f"nothing: {CHECKOUT_COPIES}/ already matches common/{FOLDER}/"))
    stray = sorted(p.name for p in (root / CHECKOUT_COPIES).glob(f"*{SUFFIX}")
                   if packaged_preset(p.stem) is None)
    if stray:
        print(f"note: {', '.join(stray)} in {CHECKOUT_COPIES}/ has no copy in common/{FOLDER}/ "
              f"(the one the code reads): move it there and run this again", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
