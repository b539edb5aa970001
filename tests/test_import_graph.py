"""The import graph of the package folders, read from the source with `ast` (every import,
module-level or inside a function, counts): no circle between modules, and no import that
climbs the floors docs/design.md draws (genotypes at the bottom; space and common on it;
search and retrain on those, never importing each other; study on top). Inside space,
layers/ sits below darts/, which sits below models/."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("genotypes", "space", "common", "search", "retrain", "study")
#: A module may import its own package and packages on a lower floor only.
FLOORS = {"genotypes": 0, "space": 1, "common": 1, "search": 2, "retrain": 2, "study": 3}
#: Command lines that use more than their package's library: `python -m genotypes random
#: --budget` counts parameters with space's counter, so that command (and it alone) sits
#: with search and retrain; nothing imports it.
COMMANDS = {"genotypes.__main__": 2,
            # the docs generator documents every package's config keys, the search
            # algorithms' own included; only the tests import it
            "common.config_docs": 3}
#: Floors inside space.
SPACE_FLOORS = {"layers": 0, "darts": 1, "models": 2}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, name: str) -> set[str]:
    """The project modules `path` imports (absolute names; relative ones resolved)."""
    is_pkg = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")[: len(name.split(".")) - node.level + (1 if is_pkg else 0)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            out.add(module)
            # `from pkg import mod` imports the module pkg.mod
            out.update(f"{module}.{a.name}" for a in node.names)
    return {m for m in out if m.split(".")[0] in PACKAGES}


def graph() -> dict[str, set[str]]:
    files = {module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}
    return {name: {m for m in imports_of(path, name) if m in files and m != name}
            for name, path in files.items()}


def floor(module: str) -> int:
    return COMMANDS.get(module, FLOORS[module.split(".")[0]])


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One circle of `edges` (a list of modules, first == last), or None. A package's
    __init__ importing its own submodules is not a circle (the submodule's import of the
    package runs the __init__ first), so edges between a package and its own modules do not
    count."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for t in sorted(edges.get(m, ())):
            if t.startswith(m + ".") or m.startswith(t + "."):  # a package and its own modules
                continue
            if state.get(t) == 1:
                return stack[stack.index(t):] + [t]
            if t not in state and (found := visit(t)):
                return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(edges):
        if m not in state and (found := visit(m)):
            return found
    return None


def climbs(edges: dict[str, set[str]]) -> list[str]:
    bad = []
    for m, targets in edges.items():
        for t in targets:
            top, ttop = m.split(".")[0], t.split(".")[0]
            if top == ttop:
                if top == "space" and m.count(".") and t.count("."):
                    a, b = m.split(".")[1], t.split(".")[1]
                    if a in SPACE_FLOORS and b in SPACE_FLOORS and SPACE_FLOORS[b] > SPACE_FLOORS[a]:
                        bad.append(f"{m} -> {t}")
                continue
            if t in COMMANDS or FLOORS[ttop] >= floor(m):
                bad.append(f"{m} -> {t}")
    return sorted(bad)


def test_the_package_folders_import_without_a_circle():
    cycle = find_cycle(graph())
    assert cycle is None, " -> ".join(cycle or [])


def test_no_import_climbs_the_floors():
    assert climbs(graph()) == []


def test_the_checks_catch_a_circle_and_a_climb():
    # the checks themselves can fail: a circle through three modules, and each kind of climb
    assert find_cycle({"study.a": {"study.b"}, "study.b": {"study.c"}, "study.c": {"study.a"}}) == [
        "study.a", "study.b", "study.c", "study.a"]
    assert find_cycle({"study": {"study.a"}, "study.a": {"study"}}) is None
    assert climbs({"genotypes.x": {"space.darts.ops"}, "search.cli": {"retrain.setup"},
                   "space.layers.fs": {"space.darts.ops"}, "common.x": {"search.cli"},
                   "genotypes.__main__": {"study.fit"}, "study.x": {"genotypes.__main__"},
                   "retrain.x": {"common.y", "space.models"}}) == [
        "common.x -> search.cli", "genotypes.__main__ -> study.fit", "genotypes.x -> space.darts.ops",
        "search.cli -> retrain.setup", "space.layers.fs -> space.darts.ops",
        "study.x -> genotypes.__main__"]


def test_the_two_former_circles_are_gone():
    # `python -m retrain.export` runs retrain/export/__main__.py, not the library; study's
    # path_arg lives in study.sources, which study.commands imports through study.spec
    edges = graph()
    assert "retrain.onnx_cli" not in edges["retrain.export"]
    assert edges["retrain.export.__main__"] == {"retrain.onnx_cli"}
    assert "study.commands" not in edges["study.sources"]
