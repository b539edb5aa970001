"""The config schema: presets validated by it, --set typed by it, old runs' config.yaml still
loading, and the generated reference and paper preset in step with it."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import yaml
from image_folders import make_image_folder

from common import config_docs
from common.cli_flags import RESUMABLE
from common.config import apply_override, available_presets, load_preset, resolve_config
from common.config_schema import SECTIONS, RetrainConfig
from common.errors import UserError
from common.schema import as_dict, build, key, leaf_keys, set_key
from search.settings import SearchConfig

ROOT = Path(__file__).resolve().parents[1]


def test_generated_reference_and_paper_preset_are_committed():
    """docs/configuration.md and the paper preset (common/presets/paper.yaml, copied to
    configs/) are `python -m common.config_docs --write`'s output: run it after changing the
    schema."""
    assert (ROOT / config_docs.DOCS_FILE).read_text() == config_docs.markdown()
    assert (ROOT / config_docs.PAPER_FILE).read_text() == config_docs.paper_yaml()
    assert (ROOT / "configs" / "paper.yaml").read_text() == config_docs.paper_yaml()


def test_paper_preset_is_the_schema_defaults_and_every_preset_validates():
    for section, cls in SECTIONS.items():
        assert build(cls, load_preset("paper", section)) == cls()
    for preset in available_presets():
        data = yaml.safe_load((ROOT / "common" / "presets" / f"{preset}.yaml").read_text())
        for section in SECTIONS:
            if section in data:
                resolve_config(section, preset)


def test_reference_lists_every_key_with_its_facts():
    text = (ROOT / "docs" / "configuration.md").read_text()
    for cls in SECTIONS.values():
        for name in leaf_keys(cls):
            assert f"| `{name}` |" in text, name
    row = next(line for line in text.splitlines() if line.startswith("| `runtime.threads` |"))
    assert "integer or null" in row and ">= 1" in row and "| yes |" in row


def test_schema_choices_match_the_code():
    from retrain.setup import FS_MODES
    from space.layers.convert import MODES

    assert FS_MODES == ("off", "fs", "dfs", "genotype", "fs3d")
    assert set(FS_MODES) == {"off", "genotype", *MODES}  # the converter takes every FS kind


def test_an_unknown_algorithm_is_one_line_naming_the_registered_ones():
    from search.settings import check_config

    cfg = SearchConfig()
    cfg.algorithm = "snas"
    with pytest.raises(UserError, match=r"^config algorithm='snas' is invalid: choose one of "
                                        r"darts, pc-darts, gdas"):
        check_config(cfg)


def test_resumable_keys_come_from_the_schema():
    from search.cli import SEARCH_RESUMABLE

    shared = {"runtime.device", "runtime.threads", "runtime.adapt_threads", "data.root",
              "data.download", "data.workers", "log.tensorboard"}
    assert set(RESUMABLE) == shared
    assert set(SEARCH_RESUMABLE) == shared | {"runtime.draw_every", "runtime.plot"}


def test_set_values_are_typed_by_the_schema():
    cfg = resolve_config("search", "paper", ["arch.lr=3e-3", "fs.ratios=[8,1,2,4]",
                                             "data.max_images=null", "budget.params=1.5M",
                                             "fs.mode=off", "epochs=7.0", "data.root=123"])
    assert cfg.arch.lr == 0.003 and cfg.fs.ratios == [1.0, 2.0, 4.0, 8.0]
    assert cfg.data.max_images is None and cfg.budget.params == 1_500_000
    assert cfg.fs.mode == "off" and cfg.epochs == 7 and isinstance(cfg.epochs, int)
    assert cfg.data.root == "123"  # a text key keeps the text as typed
    for item, words in (("fs=1", "is a section"), ("weights.lr=-1", "weights.lr=-1.0 is invalid"),
                        ("runtime.amp=3", "use true or false"),
                        ("epochs=null", "epochs=None is invalid: it must be an integer >= 1"),
                        ("fs.mode=sfd", "choose one of off, fs, dfs"),
                        ("zzzz=1", "see docs/configuration.md")):
        with pytest.raises(UserError, match=words):
            apply_override(cfg, item)


def test_imagenet_keys_are_the_sections_own():
    from retrain import setup

    cfg = setup.resolve("paper", ["imagenet.optimizer.lr=0.5"], lambda c: True)
    assert cfg.optimizer.lr == 0.5 and cfg.epochs == 250 and cfg.imagenet is None
    with pytest.raises(UserError, match="did you mean imagenet.epochs"):
        setup.resolve("paper", ["imagenet.epochz=1"], lambda c: True)
    with pytest.raises(UserError, match="imagenet.epochs=0 is invalid"):
        setup.resolve("paper", ["imagenet.epochs=0"], lambda c: True)


def test_a_preset_with_a_wrong_key_or_value_is_one_line(tmp_path):
    bad = tmp_path / "mine.yaml"
    bad.write_text("search: {weights: {lrr: 0.1}}\n")
    with pytest.raises(UserError, match=r"unknown config key 'weights.lrr' in preset .*mine.yaml; "
                       "did you mean weights.lr"):
        resolve_config("search", str(bad))
    bad.write_text("search: {epochs: many}\n")
    with pytest.raises(UserError, match="config epochs='many' is invalid"):
        resolve_config("search", str(bad))
    bad.write_text("search: {fs: {mode: off}}\n")  # YAML's boolean `off` is the text here
    assert resolve_config("search", str(bad)).fs.mode == "off"


def test_a_new_key_needs_only_its_declaration():
    """What adding a key takes: the declaration; building, --set, checks, the resumable list
    and the reference follow from it."""

    @dataclasses.dataclass
    class Extended(SearchConfig):
        """SearchConfig with one more key."""

        warm_restarts: int = key(0, "restart the cosine schedule this many times", lo=0,
                                 resumable=True)

    cfg = build(Extended, {"epochs": 3})
    assert cfg.warm_restarts == 0 and cfg.epochs == 3
    set_key(cfg, "warm_restarts", 2)
    assert as_dict(cfg)["warm_restarts"] == 2
    with pytest.raises(UserError, match="warm_restarts=-1 is invalid: it must be an integer >= 0"):
        set_key(cfg, "warm_restarts", -1)
    with pytest.raises(UserError, match="did you mean warm_restarts"):
        set_key(cfg, "warm_restart", 1)
    from common.schema import resumable_keys

    assert "warm_restarts" in resumable_keys(Extended)


# A search run's config.yaml as written before budget.aim, runtime.adapt_threads and
# fs.offset_lr_scale existed (epochs raised to 2 so that a resume has an epoch to run).
OLD_SEARCH = """\
base: paper
dataset: {dataset}
preset: smoke
command: python -m search {dataset} --preset smoke --epochs 1
search:
  algorithm: darts
  partial_channels: 4
  gdas:
    tau_start: 10.0
    tau_end: 0.1
  seed: 2
  epochs: 2
  batch_size: 8
  train_portion: 0.5
  init_channels: 4
  layers: 5
  fs:
    mode: dfs
    ratio: 2.0
    ratios: null
    num_offsets: 4
    offsets_with: arch
    temperature:
      start: 1.0
      end: 1.0
      schedule: cosine
  weights:
    lr: 0.05
    lr_min: 0.001
    momentum: 0.9
    weight_decay: 0.0003
    grad_clip: 5.0
  arch:
    order: first
    lr: 0.0003
    betas:
    - 0.5
    - 0.999
    weight_decay: 0.001
    warmup_epochs: 0
    fd_eps: 0.01
    ratio_lr: null
    beta_decay: null
    max_skip: null
    max_free: null
  budget:
    params: null
    init_channels: 36
    layers: 20
    mode: hinge
    weight: 1.0
    warmup_epochs: 0
  data:
    root: data
    download: true
    input_size: null
    max_images: 1200
    workers: 0
  runtime:
    device: auto
    amp: true
    threads: 1
    channels_last: true
    deterministic: false
    draw_every: 0
    plot: false
  log:
    tensorboard: false
"""


@pytest.mark.slow  # trains two tiny epochs
def test_resume_of_a_search_whose_config_lacks_newer_keys(tmp_path, capsys):
    from search.cli import main

    folder = make_image_folder(tmp_path / "imgs")
    run = tmp_path / "run"
    main([str(folder), "--preset", "smoke", "--set", "init_channels=4", "--set", "layers=5",
          "--batch-size", "8", "--threads", "1", "--workers", "0", "--epochs", "1", "--out",
          str(run), "--set", "runtime.draw_every=0", "--set", "runtime.plot=false"])
    (run / "config.yaml").write_text(OLD_SEARCH.format(dataset=folder))
    main(["--resume", str(run)])
    records = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [0, 1]
    saved = yaml.safe_load((run / "config.yaml").read_text())["search"]
    assert saved["budget"]["aim"] == 1.0 and saved["runtime"]["adapt_threads"] is True
    assert saved["fs"]["offset_lr_scale"] == 1.0  # the defaults of the keys it lacked


def test_an_old_retrain_config_loads_with_the_defaults_of_newer_keys(tmp_path):
    old = as_dict(resolve_config("retrain", "smoke"))
    old["imagenet"] = None
    del old["runtime"]["adapt_threads"], old["fs"]["offset_lr_scale"]
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"base": "paper", "dataset": "x", "preset": "smoke",
                                    "genotype": {}, "retrain": old}, sort_keys=False))
    cfg = resolve_config("retrain", str(path), ["runtime.threads=1"])
    assert isinstance(cfg, RetrainConfig) and cfg.imagenet is None and cfg.epochs == 6
    assert cfg.runtime.adapt_threads is True and cfg.fs.offset_lr_scale == 100.0


def test_a_preset_without_a_section_takes_its_base_section():
    """configs/proxy.yaml has only a search section: its retrain section is smoke's."""
    assert as_dict(resolve_config("retrain", "proxy")) == as_dict(resolve_config("retrain", "smoke"))
