"""A --model network's parameter target with the ratio capped (`fs.params` with
`fs.max_ratio`, space.models.width_fit): the network is narrowed to the widest width where the
cap fits, the fitted ratio stays at or under it, and where the cap is not needed nothing moves;
counted against the converted networks' own parameter reports."""

from __future__ import annotations

import copy
import json
import random

import pytest
from cli_exits import one_line_exit

from retrain.cli import main
from space.darts.width_fit import widest
from space.layers.convert import Conversion, convert, fitted_ratio, fs_count
from space.layers.report import param_report
from space.models import get_model
from space.models.width_fit import default_width, narrowed_width

TARGET = 70_000


def _effective(width: int, ratio: float) -> int:
    net = convert(get_model("resnet20", width=width), Conversion(mode="fs", ratio=ratio))
    return param_report(net)["total"]


def test_the_width_is_the_widest_where_the_capped_ratio_fits():
    width = narrowed_width("resnet20", TARGET, 2.0, 10, 3, (32, 32), {})
    assert width == 11 and default_width("resnet20") == 16
    assert _effective(11, 2.0) <= TARGET < _effective(12, 2.0)  # counted on the built networks
    net = convert(get_model("resnet20", width=11), Conversion(mode="fs", params=TARGET))
    assert 1.0 <= fitted_ratio(net) <= 2.0 and param_report(net)["total"] <= TARGET
    # An explicit width is the widest allowed, and a width that fits already is kept.
    assert narrowed_width("resnet20", TARGET, 2.0, 10, 3, (32, 32), {"width": 10}) is None
    assert narrowed_width("resnet20", TARGET, 4.0, 10, 3, (32, 32), {}) is None  # 3.94 < 4


@pytest.mark.parametrize("step", [1, 2])
def test_widest_matches_a_scan(step):
    rng = random.Random(step)
    for _ in range(200):
        lo = rng.randrange(0, 20) * step
        hi = lo + rng.randrange(0, 30) * step
        edge = rng.randrange(lo - step, hi + 2 * step)
        want = max([w for w in range(lo, hi + 1, step) if w <= edge], default=lo)
        assert widest(lo, hi, lambda w, e=edge: w <= e, step=step) == want


def _summary(capsys, *items: str, model: str = "resnet20") -> dict:
    sets = [x for item in items for x in ("--set", item)]
    assert main(["--model", model, "--fs", "fs", "--summary", "--json", *sets]) == 0
    return json.loads(capsys.readouterr().out)


def test_the_retrain_narrows_with_the_cap_and_keeps_the_width_without(capsys):
    capped = _summary(capsys, "fs.params=70k", "fs.max_ratio=2")
    assert capped["network"]["settings"] == {"width": 11} and capped["fitted_ratio"] <= 2.0
    assert capped["network"]["extra"] == {"width_from": 16, "max_ratio": 2.0}
    # Its size against the network asked for (ResNet-20 at width 16), beside the FS
    # compression against its own width's plain network.
    t, full = capped["totals"], param_report(get_model("resnet20"))["total"]
    assert t["unnarrowed"] == full == 269_722
    assert t["compression_unnarrowed"] == pytest.approx(full / t["effective"])
    assert t["uncompressed"] == param_report(get_model("resnet20", width=11))["total"] < full
    free = _summary(capsys, "fs.params=70k", "fs.max_ratio=null")
    assert free["network"]["settings"] == {} and free["network"]["extra"] == {}
    assert "unnarrowed" not in free["totals"]
    assert free["fitted_ratio"] == pytest.approx(3.94, abs=0.005)
    assert main(["--model", "resnet20", "--fs", "fs", "--summary", "--set", "fs.params=70k",
                 "--set", "fs.max_ratio=2"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("network: resnet20 (width 11, narrowed from 16 for fs.max_ratio 2)")
    ratio = 269_722 / t["effective"]
    assert (f"against resnet20 at width 16 (the width before fs.max_ratio narrowed it; 269,722 "
            f"parameters): compression {ratio:.2f}x") in text


def test_a_shared_filter_network_narrows_from_the_narrowest_width_it_builds(capsys):
    # sl-resnet's shared conv takes the image padded to n channels: n >= 3, never 1 or 2.
    capped = _summary(capsys, "fs.params=5k", "fs.max_ratio=2", model="sl-resnet")
    width = capped["network"]["settings"]["width"]
    assert width >= 3 and capped["totals"]["effective"] <= 5_000
    assert fs_count(get_model("sl-resnet", width=width + 1), 2.0) > 5_000  # the widest
    assert narrowed_width("sl-resnet", 5_000, 2.0, 10, 3, (32, 32), {}) == width


@pytest.mark.parametrize(("argv", "message"), [
    (["--model", "vgg16", "--set", "fs.params=1M", "--set", "fs.max_ratio=2"],
     "vgg16 needs FS ratios above fs.max_ratio 2 to reach 1,000,000 parameters and takes no "
     "model.width"),
    (["--model", "resnet20", "--set", "fs.params=500", "--set", "fs.max_ratio=2"],
     "resnet20 at its narrowest width 1 with FS ratio 2 has 712 parameters, over fs.params"),
    (["--model", "s-vgg", "--set", "fs.params=5k", "--set", "fs.max_ratio=2"],
     "s-vgg at its narrowest width 3 with FS ratio 2 has"),
    (["--model", "resnet20", "--set", "fs.max_ratio=2"], "fs.max_ratio caps the ratio that "
                                                         "fs.params fits"),
    (["--genotype", "DARTS_V2", "--set", "fs.max_ratio=2"], "fs.max_ratio convert a --model "
                                                           "network's convs"),
    (["--model", "resnet20", "--ratio", "3", "--set", "fs.params=70k"],
     "fs.ratio 3 and fs.params both set the ratio; give one"),
])
def test_a_cap_that_cannot_be_met_or_applied_is_one_line(argv, message, capsys):
    assert message in one_line_exit(main, [*argv, "--fs", "fs", "--summary"], capsys)


def test_the_narrowed_network_rebuilds_from_its_spec(capsys):
    from retrain.model import NetSpec, build_network

    net = _summary(capsys, "fs.params=70k", "fs.max_ratio=2")["network"]
    spec = NetSpec.from_dict(copy.deepcopy(net))
    assert param_report(build_network(spec))["total"] <= TARGET


def test_a_narrowed_run_reports_its_size_against_the_width_asked_for(tmp_path, capsys):
    from test_retrain_cli import make_folder

    data = make_folder(tmp_path / "data", per_class=4, test_per_class=2)
    out = tmp_path / "run"
    assert main(["--model", "resnet8", "--fs", "fs", "--set", "fs.params=20k", "--set",
                 "fs.max_ratio=2", "--dataset", str(data), "--preset", "smoke", "--epochs", "1",
                 "--batch-size", "8", "--threads", "1", "--set", "export.onnx=false", "--out",
                 str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    counts, classes = metrics["counts"], metrics["network"]["num_classes"]
    full = param_report(get_model("resnet8", classes))["total"]
    assert counts["unnarrowed"] == full and counts["effective"] <= 20_000
    assert metrics["network"]["extra"]["width_from"] == 16  # narrowed from resnet8's own width
    assert f"({full / counts['effective']:.2f}x against resnet8 at width 16)" in capsys.readouterr().out
