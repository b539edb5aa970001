"""`python -m retrain` (see retrain.cli)."""

import sys

from retrain.cli import main

sys.exit(main())
