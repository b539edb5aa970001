"""Nothing of the user's is ever deleted: --overwrite clears only a folder that carries the
run marker, and there only the files this project writes; under both CLIs and the study."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_exits import one_line_exit
from run_files import run_files_outside_the_list
from test_retrain_cli import make_folder
from test_study import FAKE, _study, _write

from common.errors import UserError
from common.runlock import LOCK_FILE
from common.runlog import RUN_MARKER, clear_run_dir, is_run_dir, make_run_dir
from retrain.cli import main as retrain_main
from search.cli import main as search_main
from study import runner
from study.cli import main as study_main

USER_FILES = {"config.yaml": "lr: 0.1\n", "log.jsonl": '{"epoch": 0, "loss": 1.0}\n',
              "notes.txt": "my notes\n"}


def _user_folder(path: Path) -> Path:
    path.mkdir(parents=True)
    for name, text in USER_FILES.items():
        (path / name).write_text(text)
    return path


def _intact(path: Path) -> bool:
    return sorted(p.name for p in path.iterdir()) == sorted(USER_FILES) and all(
        (path / n).read_text() == t for n, t in USER_FILES.items())


@pytest.fixture
def data(tmp_path) -> Path:
    return make_folder(tmp_path / "data", per_class=2, test_per_class=1)


def test_a_users_folder_with_run_like_names_is_not_a_run(tmp_path):
    folder = _user_folder(tmp_path / "mine")
    assert not is_run_dir(folder)
    for overwrite in (False, True):
        with pytest.raises(UserError, match="not a run directory") as e:
            make_run_dir(folder, "search", "x", overwrite=overwrite)
        assert "--overwrite" not in str(e.value) and "--resume" not in str(e.value)
    with pytest.raises(UserError, match="not a run directory"):
        clear_run_dir(folder)
    assert _intact(folder)


@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
def test_users_folder_survives_the_search_cli(data, tmp_path, capsys, overwrite):
    folder = _user_folder(tmp_path / "mine")
    err = one_line_exit(search_main, [str(data), "--preset", "smoke", "--out", str(folder),
                                      *overwrite], capsys)
    assert "not a run directory" in err and "--overwrite" not in err and "--resume" not in err
    assert _intact(folder)


@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
def test_users_folder_survives_the_retrain_cli(data, tmp_path, capsys, overwrite):
    folder = _user_folder(tmp_path / "mine")
    err = one_line_exit(retrain_main, ["--genotype", "DARTS_V2", "--dataset", str(data),
                                       "--preset", "smoke", "--out", str(folder), *overwrite], capsys)
    assert "not a run directory" in err and "--overwrite" not in err
    assert _intact(folder)


def test_users_folder_survives_the_study(data, tmp_path, capsys, monkeypatch):
    """A user's folder where a study expects one of its runs: the run fails with a clear
    line, and the folder is untouched, though its file names are those of a run."""
    (tmp_path / "fake_retrain.py").write_text(FAKE)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    monkeypatch.setenv("FAKE_LOG", str(tmp_path / "fake.jsonl"))
    monkeypatch.setitem(runner.MODULES, "retrain", "fake_retrain")
    out = tmp_path / "out"
    folder = _user_folder(out / "runs" / "fs-off" / "seed-0")
    study = _study(data, out, seeds=[0])
    assert study_main(["run", str(_write(tmp_path / "s.yaml", study))]) == 1
    assert "not a run directory" in capsys.readouterr().out
    assert _intact(folder)
    assert (out / "runs" / "fs-r2" / "seed-0" / "metrics.json").is_file()  # the others ran


def test_overwrite_removes_only_the_projects_files(tmp_path, capsys):
    run = make_run_dir(tmp_path / "run", "search", "x")
    written = ["config.yaml", "log.jsonl", "checkpoint.pt", "genotype.json",
               "genotypes/epoch-000.json", "cells/normal.gv", "cells/normal.png", "plots/curves.png",
               ".checkpoint.pt.abc123.tmp"]
    for name in written:
        (run / name).parent.mkdir(parents=True, exist_ok=True)
        (run / name).write_text("run output")
    (run / "notes.txt").write_text("my notes")
    (run / "cells" / "my-sketch.svgz").write_text("mine")
    (run / "analysis").mkdir()
    (run / "analysis" / "genotype.json").write_text("mine too")  # same name, not the run's
    assert make_run_dir(run, "retrain", "x", overwrite=True) == run
    said = capsys.readouterr().out
    left = sorted(str(p.relative_to(run)) for p in run.rglob("*") if p.is_file())
    assert left == sorted([RUN_MARKER, LOCK_FILE, "analysis/genotype.json",
                           "cells/my-sketch.svgz", "notes.txt"])
    assert (run / "notes.txt").read_text() == "my notes"
    assert (run / RUN_MARKER).read_text() == "retrain\n"  # the new run's kind
    assert not (run / "genotypes").exists() and not (run / "plots").exists()  # emptied, removed
    assert "kept 3 file(s)" in said and "notes.txt" in said


def test_a_run_without_overwrite_points_to_overwrite_and_resume(tmp_path, capsys, data):
    run = make_run_dir(tmp_path / "run", "search", "x")
    (run / "log.jsonl").write_text('{"epoch": 0}\n')
    err = one_line_exit(search_main, [str(data), "--out", str(run)], capsys)
    assert "--overwrite" in err and "--resume" in err
    assert (run / "log.jsonl").read_text() == '{"epoch": 0}\n'


def test_run_files_outside_the_list_sees_a_stray_file(tmp_path):
    run = make_run_dir(tmp_path / "run", "retrain", "x")
    (run / "metrics.json").write_text(json.dumps({}))
    (run / "extra.bin").write_text("")
    assert run_files_outside_the_list(run) == ["extra.bin"]
