"""Faults a user can meet: a full disk, a half-written log line, two processes on one run
directory, bad image files, symlinks, a train/test overlap. Each one is one line, and loses
nothing (docs/usage.md#faults)."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cli_exits import one_line_exit
from image_folders import make_image_folder
from test_retrain_cli import make_folder
from test_study import _study, _write

import common.runlog as runlog
from common import data_check
from common.checkpoint import load_checkpoint
from common.data import open_dataset
from common.errors import Diverged, UserError, cli_entry
from common.files import atomic_write_text
from common.runlock import LOCK_FILE, RunLock, release_run_dirs
from common.runlog import JsonlLog, interrupt_advice, make_run_dir
from retrain.cli import main as retrain_main
from search.cli import main as search_main
from search.outputs import RunOutputs
from study.cli import main as study_main

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--preset", "smoke", "--set", "init_channels=4", "--set", "layers=5", "--batch-size", "8",
        "--threads", "1", "--set", "runtime.draw_every=0", "--set", "runtime.plot=false"]
RETRAIN = ["--preset", "smoke", "--set", "init_channels=4", "--set", "layers=3", "--batch-size",
           "8", "--threads", "1", "--set", "data.workers=0", "--epochs", "1"]

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return make_image_folder(tmp_path / "imgs")


def _files(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*"))
            if p.is_file() and p.name != LOCK_FILE}


def _stop_after_first_epoch(monkeypatch) -> None:
    """The run is killed right after its first checkpoint (Ctrl-C reaches the same state)."""
    real = RunOutputs.epoch_done

    def done(self, epoch, *args, **kwargs):
        real(self, epoch, *args, **kwargs)
        if epoch == 0:
            raise KeyboardInterrupt

    monkeypatch.setattr(RunOutputs, "epoch_done", done)


# --- 1. the log and a full disk -------------------------------------------------------------

def test_log_reader_skips_a_half_written_last_line(tmp_path, capsys):
    log = JsonlLog(tmp_path / "log.jsonl")
    log.write({"epoch": 0})
    with open(log.path, "a") as f:
        f.write('{"epoch": 1, "train_lo')
    assert log.read() == [{"epoch": 0}]
    note = capsys.readouterr().out.strip()
    assert len(note.splitlines()) == 1 and "cut short" in note and str(log.path) in note
    log.truncate(1)
    assert log.path.read_text() == '{"epoch": 0}\n'
    log.path.write_text('{"epoch": 0}\n{"ep\n{"epoch": 2}\n')  # not an append: edited by hand
    with pytest.raises(UserError, match="line 2 is not JSON"):
        log.read()


def test_a_failed_log_append_leaves_the_log_as_it_was(tmp_path, monkeypatch):
    log = JsonlLog(tmp_path / "log.jsonl")
    log.write({"epoch": 0})
    real = os.write

    def half_then_full(fd, data):
        real(fd, bytes(data[: len(data) // 2]))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(runlog.os, "write", half_then_full)
    with pytest.raises(OSError) as e:
        log.write({"epoch": 1, "loss": 1.5})
    assert e.value.filename == str(log.path)
    assert log.path.read_text() == '{"epoch": 0}\n'


@pytest.mark.slow
def test_resume_after_a_half_written_log_line_and_a_left_temp_file(folder, tmp_path, capsys,
                                                                     monkeypatch):
    whole = tmp_path / "whole"
    search_main([str(folder), *TINY, "--epochs", "2", "--out", str(whole)])
    capsys.readouterr()
    run = tmp_path / "run"
    _stop_after_first_epoch(monkeypatch)
    one_line_exit(search_main, [str(folder), *TINY, "--epochs", "2", "--out", str(run)], capsys,
                  code=130)
    monkeypatch.undo()
    with open(run / "log.jsonl", "a") as f:
        f.write('{"epoch": 1, "train_loss": 2.0')  # the kill came mid-append
    (run / ".checkpoint.pt.x1y2.tmp").write_bytes(b"half a checkpoint")
    search_main(["--resume", str(run), "--threads", "1"])
    out = capsys.readouterr().out
    assert "last line of" in out and "cut short" in out
    assert not list(run.glob(".*.tmp"))
    records = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [0, 1]
    assert (run / "genotype.json").read_text() == (whole / "genotype.json").read_text()


def _fill(path: Path) -> None:
    """Write until the file system says it is full."""
    with open(path, "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 65536)
        except OSError as e:
            assert e.errno == errno.ENOSPC


def _full_disk_run(folder: Path, run: Path, capsys, monkeypatch, make_full) -> None:
    """A 2-epoch search whose disk fills after the first checkpoint: one line naming the
    file, the checkpoint kept, then --resume (space freed) finishes the run."""
    real = RunOutputs.epoch_done

    def done(self, epoch, *args, **kwargs):
        real(self, epoch, *args, **kwargs)
        if epoch == 0:
            make_full()

    monkeypatch.setattr(RunOutputs, "epoch_done", done)
    err = one_line_exit(search_main, [str(folder), *TINY, "--epochs", "2", "--out", str(run)],
                        capsys)
    assert "No space left on device" in err and str(run) in err
    assert f"{run / 'checkpoint.pt'} (the last completed epoch) is kept" in err
    assert f"--resume {run}" in err
    assert load_checkpoint(run / "checkpoint.pt", "search")["epoch"] == 1
    assert [r["epoch"] for r in JsonlLog(run / "log.jsonl").read()] == [0]
    assert not list(run.glob(".*.tmp"))
    monkeypatch.undo()


@pytest.mark.slow
def test_full_disk_injected(folder, tmp_path, capsys, monkeypatch):
    """Runs everywhere: the disk 'fills' for every write after the first epoch."""
    run = tmp_path / "run"
    real = os.write

    def full(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    def make_full():
        monkeypatch.setattr(runlog.os, "write", full)

    _full_disk_run(folder, run, capsys, monkeypatch, make_full)
    assert os.write is real
    search_main(["--resume", str(run), "--threads", "1"])
    assert [r["epoch"] for r in JsonlLog(run / "log.jsonl").read()] == [0, 1]


@pytest.mark.slow
def test_full_disk_on_a_small_tmpfs(folder, tmp_path, capsys, monkeypatch):
    """A real full disk, where this process may mount a tmpfs (root)."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", str(mnt)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip() or 'not root'}); "
                    "test_full_disk_injected covers it")
    try:
        run = mnt / "run"
        _full_disk_run(folder, run, capsys, monkeypatch, lambda: _fill(mnt / "filler"))
        (mnt / "filler").unlink()
        search_main(["--resume", str(run), "--threads", "1"])
        assert [r["epoch"] for r in JsonlLog(run / "log.jsonl").read()] == [0, 1]
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def test_a_full_disk_before_the_first_checkpoint_says_to_start_again(folder, tmp_path, capsys,
                                                                      monkeypatch):
    import search.cli

    def full(run_dir, *args):
        raise OSError(errno.ENOSPC, "No space left on device", str(run_dir / "config.yaml"))

    monkeypatch.setattr(search.cli, "save_run_config", full)
    run = tmp_path / "run"
    err = one_line_exit(search_main, [str(folder), *TINY, "--out", str(run)], capsys)
    assert f"{run / 'config.yaml'}: No space left on device; free some disk space" in err
    assert "no checkpoint yet" in err and f"--out {run} --overwrite" in err


def test_a_file_system_error_is_one_line(capsys):
    @cli_entry
    def main(argv):
        raise OSError(errno.EROFS, "Read-only file system", "/data/runs/x/config.yaml")

    err = one_line_exit(main, [], capsys)
    assert "/data/runs/x/config.yaml: Read-only file system" in err and "writable" in err


# --- 2. one process per run directory --------------------------------------------------------

HOLD = ("import sys; from common.runlock import RunLock; l = RunLock(sys.argv[1]); "
        "print('locked', flush=True); sys.stdin.read()")


@pytest.fixture
def holder(tmp_path):
    """Start a process that holds a folder's lock until the test closes its stdin."""
    procs = []

    def start(path: Path) -> subprocess.Popen:
        p = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], cwd=ROOT, text=True,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert p.stdout.readline().strip() == "locked"
        procs.append(p)
        return p

    yield start
    for p in procs:
        p.stdin.close()
        p.wait()


def test_a_locked_run_refuses_overwrite_and_resume(folder, tmp_path, capsys, holder):
    run = make_run_dir(tmp_path / "run", "search", "x")
    release_run_dirs()
    (run / "config.yaml").write_text("dataset: x\nsearch: {}\n")
    (run / "checkpoint.pt").write_bytes(b"the running search's")
    before = _files(run)
    proc = holder(run)
    for argv in ([str(folder), *TINY, "--out", str(run), "--overwrite"],
                 ["--resume", str(run), "--threads", "1"]):
        err = one_line_exit(search_main, argv, capsys)
        assert f"in use by process {proc.pid}" in err, err
    err = one_line_exit(retrain_main, ["--genotype", "DARTS_V2", "--dataset", str(folder),
                                       *RETRAIN, "--out", str(run), "--overwrite"], capsys)
    assert f"in use by process {proc.pid}" in err
    assert _files(run) == before
    proc.stdin.close()
    proc.wait()  # the lock dies with its process: no stale marker to remove by hand
    RunLock(run).release()


def test_a_second_study_in_the_same_folder_is_refused(folder, tmp_path, capsys, holder):
    out = tmp_path / "out"
    out.mkdir()
    proc = holder(out)
    data = make_folder(tmp_path / "data", per_class=2, test_per_class=1)
    with pytest.raises(SystemExit) as e:
        study_main(["run", str(_write(tmp_path / "s.yaml", _study(data, out, seeds=[0])))])
    err = capsys.readouterr().err
    assert e.value.code == 2, err
    assert f"in use by process {proc.pid}" in err and len(err.strip().splitlines()) == 1


def test_search_and_retrain_hold_the_lock_while_they_run(folder, tmp_path, monkeypatch):
    """While a run computes, another process cannot take its folder."""
    seen = []

    def probe(run_dir: Path) -> None:
        r = subprocess.run([sys.executable, "-c", HOLD, str(run_dir)], cwd=ROOT, text=True,
                           capture_output=True, stdin=subprocess.DEVNULL)
        seen.append(r.returncode != 0 and f"in use by process {os.getpid()}" in r.stderr)

    import search.cli

    monkeypatch.setattr(search.cli, "run_search", lambda cfg, sd, run_dir, *a, **k: probe(run_dir))
    search_main([str(folder), *TINY, "--epochs", "1", "--out", str(tmp_path / "s")])
    import retrain.run

    def train_then_stop(trainer, outputs):
        probe(outputs.dir)
        raise KeyboardInterrupt

    monkeypatch.setattr(retrain.run, "train_epochs", train_then_stop)
    data = make_folder(tmp_path / "data", per_class=2, test_per_class=1)
    with pytest.raises(SystemExit):
        retrain_main(["--genotype", "DARTS_V2", "--dataset", str(data), *RETRAIN,
                      "--out", str(tmp_path / "r")])
    assert seen == [True, True]
    RunLock(tmp_path / "s").release()  # and released when the command ended
    RunLock(tmp_path / "r").release()


# --- 3. bad image files, symlinks, overlap ---------------------------------------------------

def _break(png: Path) -> None:
    """Keep the header, cut the pixel data: PIL opens it and fails only when decoding."""
    data = png.read_bytes()
    png.write_bytes(data[: len(data) // 2])


def test_corrupt_and_empty_images_in_each_split_are_named_before_the_run(tmp_path, capsys):
    data = make_folder(tmp_path / "data")
    bad = [data / "train/class0/3.png", data / "test/class2/1.png"]
    for p in bad:
        _break(p)
    empty = [data / "train/class1/0.png", data / "test/class0/0.png"]
    for p in empty:
        p.write_bytes(b"")
    out = tmp_path / "run"
    err = one_line_exit(search_main, [str(data), *TINY, "--out", str(out)], capsys)
    assert "4 image file(s)" in err
    for p in bad + empty:
        assert str(p.relative_to(data)) in err
    assert "(0 bytes)" in err and not out.exists()
    err = one_line_exit(retrain_main, ["--genotype", "DARTS_V2", "--dataset", str(data), *RETRAIN,
                                       "--out", str(out)], capsys)
    assert "4 image file(s)" in err and not out.exists()


def test_header_check_above_the_decode_limit(tmp_path, monkeypatch):
    data = make_folder(tmp_path / "data")
    (data / "train/class0/0.png").write_bytes(b"")
    (data / "test/class0/0.png").write_bytes(b"not an image at all")
    os.link(data / "train/class1/1.png", data / "test/class1/9.png")
    monkeypatch.setattr(data_check, "FULL_DECODE_LIMIT", 0)
    with pytest.raises(UserError, match="2 image file"):
        open_dataset(str(data))
    (data / "train/class0/0.png").unlink()
    (data / "test/class0/0.png").unlink()
    with pytest.raises(UserError, match="test/class1/9.png = train/class1/1.png"):
        open_dataset(str(data))


def test_a_symlink_loop_and_a_link_out_of_the_split_are_refused(tmp_path, capsys):
    data = make_folder(tmp_path / "data")
    (data / "train/class0/again").symlink_to(data / "train/class0", target_is_directory=True)
    err = one_line_exit(search_main, [str(data), *TINY, "--out", str(tmp_path / "run")], capsys)
    assert "train/class0/again" in err and "a loop" in err and not (tmp_path / "run").exists()
    (data / "train/class0/again").unlink()
    (data / "test/class1/more").symlink_to(data / "train/class1", target_is_directory=True)
    err = one_line_exit(search_main, [str(data), *TINY, "--out", str(tmp_path / "run")], capsys)
    assert "test/class1/more" in err and "outside" in err


def test_train_and_test_sharing_an_image_is_refused(tmp_path, capsys):
    data = make_folder(tmp_path / "data")
    shutil.copy(data / "train/class2/5.png", data / "test/class2/copy.png")
    err = one_line_exit(retrain_main, ["--genotype", "DARTS_V2", "--dataset", str(data), *RETRAIN,
                                       "--out", str(tmp_path / "run")], capsys)
    assert "test/class2/copy.png = train/class2/5.png" in err and "training images" in err
    assert not (tmp_path / "run").exists()


def test_the_real_subset_passes_the_checks(cifar_subset):
    train, test, _ = open_dataset(str(cifar_subset))
    assert len(train) + len(test) == 6102


# --- 4. the smaller ones ----------------------------------------------------------------------

def test_run_files_follow_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        atomic_write_text(tmp_path / "a.yaml", "x: 1\n")
        JsonlLog(tmp_path / "log.jsonl").write({"epoch": 0})
        RunLock(tmp_path).release()
    finally:
        os.umask(old)
    for name in ("a.yaml", "log.jsonl", LOCK_FILE):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o640, name


def test_too_few_images_for_a_batch_comes_before_the_run_dir(folder, tmp_path, capsys):
    out = tmp_path / "run"
    err = one_line_exit(search_main, [str(folder), *TINY, "--batch-size", "64", "--out", str(out)],
                        capsys)
    assert "needs at least one batch" in err and not out.exists()


def test_resume_of_a_missing_folder(tmp_path, capsys):
    for main in (search_main, retrain_main):
        err = one_line_exit(main, ["--resume", str(tmp_path / "nope")], capsys)
        assert "no such folder" in err and "config.yaml" not in err


def test_divergence_counts_epochs_as_the_console_does():
    text = str(Diverged("search", 0, 3, "loss is nan", "lower the lr", epochs=2))
    assert "epoch 1/2, batch 4" in text


def test_ctrl_c_during_an_import_is_an_interrupt(tmp_path):
    """onnxruntime's import cut by Ctrl-C raises ImportError('initialization failed')."""
    from common.errors import Interrupted

    (tmp_path / "latest.pt").write_bytes(b"x")
    with pytest.raises(Interrupted, match="continue with --resume"):
        with interrupt_advice(tmp_path, "latest.pt"):
            try:
                raise KeyboardInterrupt
            except KeyboardInterrupt as e:
                raise ImportError("initialization failed") from e


@pytest.mark.slow
def test_a_far_too_high_arch_lr_warns(folder, tmp_path, capsys):
    search_main([str(folder), *TINY, "--epochs", "1", "--set", "arch.lr=1e5", "--set",
                 "arch.warmup_epochs=0", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert "op weights collapsed" in err and "arch.lr 100000" in err
    assert len([x for x in err.splitlines() if "collapsed" in x]) == 1
