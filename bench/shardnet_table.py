"""ShaRDNet's parameter table, as this project builds the networks (figures, not a test; the
paper's figures and the check against them are in tests/test_shardnet.py).

    .venv/bin/python bench/shardnet_table.py

|W_conv| counts every convolution's weights and biases, a shared conv once; C is the
unshared counterpart's |W_conv| over the network's (what `python -m retrain --model NAME
--summary` prints for one network).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from space.models import get_model  # noqa: E402
from space.models.shardnet import conv_weights  # noqa: E402


def main() -> int:
    print("| network | n or b | |W_conv| | C |\n|---|---|---:|---:|")
    for n in (32, 64, 128, 256, 512):
        e = conv_weights(get_model("e-vgg", width=n))
        for name in ("e-vgg", "s-vgg", "sl-vgg"):
            w = conv_weights(get_model(name, width=n))
            print(f"| {name} | n={n} | {w:,} | {e / w:.2f} |")
    for b in (3, 5, 7):
        e = conv_weights(get_model("e-resnet", blocks=b))
        print(f"| e-resnet (p=16) | b={b} | {e:,} | 1.00 |")
        for n in (64, 96, 128):
            w = conv_weights(get_model("sl-resnet", width=n, blocks=b))
            print(f"| sl-resnet (n={n}) | b={b} | {w:,} | {e / w:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
