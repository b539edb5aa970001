"""Installed as a package, the project needs nothing from its checkout: the presets are
package data (common/presets/, read through importlib.resources) with configs/ as their
copy, each command line has a console script, and no message lists an empty set of choices.
The wheel itself is built, installed and run outside the checkout by tools/wheel_smoke.sh
(CI's .ci/run)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

from common import config, config_docs, preset_files
from common.errors import UserError, listing
from common.runlog import command_line

ROOT = Path(__file__).resolve().parents[1]
#: `python -m MODULE` -> its console script (README, "Install as a package").
SCRIPTS = {"search": "dfsnet-search", "retrain": "dfsnet-retrain", "retrain.export": "dfsnet-export",
           "retrain.evaluate": "dfsnet-evaluate", "genotypes": "dfsnet-genotypes",
           "study": "dfsnet-study"}


def test_configs_folder_is_a_copy_of_the_packaged_presets():
    """configs/ holds exactly the packaged presets, byte for byte: a new preset goes into
    common/presets/, then `python -m common.preset_files --write` copies it."""
    packaged = set(preset_files.available_presets())
    copies = {p.stem for p in (ROOT / "configs").glob("*.yaml")}
    assert not copies - packaged, (f"{sorted(copies - packaged)} in configs/ only: move them to "
                                   "common/presets/ (the copy the code reads)")
    assert not packaged - copies, "run `python -m common.preset_files --write`"
    for name in packaged:
        assert (ROOT / "configs" / f"{name}.yaml").read_text() == (
            ROOT / "common" / "presets" / f"{name}.yaml").read_text(), (
            f"configs/{name}.yaml differs from common/presets/{name}.yaml: edit the latter and run "
            "`python -m common.preset_files --write`")


def test_presets_come_from_the_package_whatever_the_working_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert {"paper", "smoke", "proxy", "pc-darts"} <= set(config.available_presets())
    found = preset_files.packaged_preset("smoke")
    assert found is not None and Path(str(found)).parent == ROOT / "common" / "presets"
    assert config.resolve_config("search", "smoke").epochs == 3
    # a YAML file path still wins, and a name never reaches outside the folder
    (tmp_path / "mine.yaml").write_text("base: smoke\nsearch: {epochs: 7}\n")
    assert config.resolve_config("search", "mine.yaml").epochs == 7
    assert preset_files.packaged_preset("../presets/smoke") is None


def test_an_empty_list_of_presets_is_never_offered(monkeypatch):
    with pytest.raises(UserError) as known:
        config.load_preset("nope", "search")
    assert ("choose one of cnn, cnn-cyclic, cnn-subset, paper, pc-darts, proxy, shardnet, "
            "shardnet-subset, smoke or give a path") in str(known.value)
    monkeypatch.setattr(config, "available_presets", lambda: [])
    monkeypatch.setattr(config, "packaged_preset", lambda name: None)
    with pytest.raises(UserError) as none:
        config.load_preset("smoke", "search")
    msg = str(none.value)
    assert "one of" not in msg and "reinstall dfsnet-darts" in msg and "path to a YAML file" in msg
    assert config.preset_choices() == config.NO_PRESETS
    from retrain.cli import build_parser

    assert "config preset (none installed: reinstall dfsnet-darts)" in build_parser().format_help()


def test_listing_and_the_registries_say_what_to_do_when_empty(monkeypatch):
    assert listing(["a", "b"], "none") == "a, b"
    assert listing([], "none: add one") == "none: add one"
    from search.algorithms import base

    assert base.algorithm_choices() == "darts, pc-darts, gdas"
    monkeypatch.setattr(base, "ALGORITHMS", {})
    assert "reinstall" in base.algorithm_choices()
    from genotypes.genotype import validate
    from genotypes.zoo import ZOO

    with pytest.raises(ValueError, match="given none"):
        validate(ZOO["DARTS_V2"], primitives=())


def test_every_command_line_has_a_console_script(monkeypatch):
    tomllib = pytest.importorskip("tomllib")
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert set(scripts) == set(SCRIPTS.values())
    # importing a script's module must not run it (the `if __name__ == "__main__"` guards),
    # nor change this process's OpenMP settings
    import common.cpu

    monkeypatch.setattr(common.cpu, "choose_openmp_wait_policy", lambda: None)
    for name, target in scripts.items():
        module, func = target.split(":")
        assert callable(getattr(importlib.import_module(module), func)), name
    # each module `python -m` runs is the one its script calls, or that module's main
    for module, name in SCRIPTS.items():
        target = scripts[name].split(":")[0]
        assert target in (module, f"{module}.__main__", f"{module}.cli", "retrain.console"), name


@pytest.mark.parametrize("script", ["evaluate", "export"])
def test_a_console_script_sets_the_openmp_wait_policy_before_running(script, monkeypatch, capsys):
    """A console script never runs its module's `__main__` block, where `python -m` sets it."""
    import common.cpu
    from retrain import console

    calls = []
    monkeypatch.setattr(console, "choose_openmp_wait_policy", lambda: calls.append(1))
    with pytest.raises(SystemExit) as e:
        getattr(console, script)(["--help"])
    assert e.value.code == 0 and calls == [1] and "usage" in capsys.readouterr().out
    assert common.cpu.choose_openmp_wait_policy is not None


def test_a_console_script_names_itself_in_usage_and_the_run_record(monkeypatch):
    from search.cli import build_parser

    assert build_parser().prog == "run_search.sh"
    monkeypatch.setattr(sys, "argv", ["/venv/bin/dfsnet-search", "x"])
    assert build_parser().prog == "dfsnet-search"
    monkeypatch.delenv("DFS_LAUNCHER", raising=False)
    assert command_line("search", ["x", "--epochs", "1"]) == ["dfsnet-search", "x", "--epochs", "1"]


def test_checkout_copies_are_written_and_strays_kept(tmp_path):
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "smoke.yaml").write_text("stale\n")
    (tmp_path / "configs" / "new-net.yaml").write_text("search: {}\n")  # not packaged: kept
    written = preset_files.write_checkout_copies(tmp_path)
    assert {p.name for p in written} == {f"{n}.yaml" for n in preset_files.available_presets()}
    assert (tmp_path / "configs" / "smoke.yaml").read_text() == (
        ROOT / "common" / "presets" / "smoke.yaml").read_text()
    assert (tmp_path / "configs" / "new-net.yaml").read_text() == "search: {}\n"
    assert preset_files.write_checkout_copies(tmp_path) == []


def test_generators_write_only_into_a_checkout(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(preset_files, "__file__", str(tmp_path / "site" / "common" / "preset_files.py"))
    with pytest.raises(SystemExit) as e:
        config_docs.main(["--write"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "not a checkout" in err and "run this command there" in err


def test_ci_runs_the_wheel_smoke_test_after_the_suite():
    lines = [x.strip() for x in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert lines.index("tools/wheel_smoke.sh") > lines.index("./run_tests.sh")
    assert (ROOT / "tools" / "wheel_smoke.sh").stat().st_mode & 0o111  # executable
