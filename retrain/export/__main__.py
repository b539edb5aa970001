"""`python -m retrain.export`: the ONNX export command (retrain.onnx_cli)."""

import sys

from retrain.onnx_cli import main

if __name__ == "__main__":
    sys.exit(main())
