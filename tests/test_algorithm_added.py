"""A search algorithm is added in one place: its module (the class and its own config keys,
declared beside it) and the import that registers it. A copy of the packages with one more
algorithm has it in --algo, the config schema (presets, --set, checks), the generated docs
and make_algorithm; common/ declares no algorithm's keys."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

from common.config_schema import SECTIONS, SearchBase
from common.schema import leaf_keys

ROOT = Path(__file__).resolve().parents[1]

MODULE = textwrap.dedent('''
    """SNAS-like test algorithm: DARTS with one more key."""

    from dataclasses import dataclass

    from common.schema import key
    from search.algorithms.base import Algorithm, register


    @dataclass
    class SnasKeys:
        """Its keys in the `search` section."""

        snas_temperature: float = key(1.0, "snas: the test algorithm's temperature", lo=0.0)


    @register("snas", config=SnasKeys)
    class Snas(Algorithm):
        """DARTS's behaviour under another name."""
''')

CHECK = textwrap.dedent("""
    import pytest
    from common import config_docs
    from common.config import resolve_config
    from common.errors import UserError
    from search.algorithms import ALGORITHMS, make_algorithm
    from search.cli import build_parser
    from search.settings import check_config

    assert list(ALGORITHMS) == ["darts", "pc-darts", "gdas", "snas"]
    assert build_parser().parse_args(["data", "--algo", "snas"]).algo == "snas"
    cfg = resolve_config("search", "smoke", ["algorithm=snas", "snas_temperature=0.5"])
    assert cfg.snas_temperature == 0.5 and cfg.partial_channels == 4
    assert make_algorithm(check_config(cfg)).name == "snas"
    with pytest.raises(UserError, match="snas_temperature=-1.0 is invalid"):
        resolve_config("search", "smoke", ["snas_temperature=-1"])
    assert "`snas_temperature`" in config_docs.markdown()
    assert "snas_temperature: 1.0" in config_docs.paper_yaml()
    print("ok")
""")


def test_common_declares_no_algorithms_keys():
    assert not {"partial_channels", "gdas.tau_start"} & set(leaf_keys(SearchBase))
    schema_source = (ROOT / "common" / "config_schema.py").read_text()
    assert not re.search(r"partial_channels|tau_start|tau_end|class Gdas", schema_source)
    import search.settings  # registers the joined schema

    assert {"partial_channels", "gdas.tau_start", "gdas.tau_end"} <= set(leaf_keys(SECTIONS["search"]))
    assert "PRIMITIVES" not in (ROOT / "common" / "tensorboard.py").read_text()
    assert search.settings.SearchConfig is SECTIONS["search"]


def test_an_algorithm_added_in_its_module_is_everywhere(tmp_path):
    for pkg in ("genotypes", "space", "common", "search"):
        shutil.copytree(ROOT / pkg, tmp_path / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    algorithms = tmp_path / "search" / "algorithms"
    (algorithms / "snas.py").write_text(MODULE)
    init = algorithms / "__init__.py"
    init.write_text(init.read_text().replace(
        "# isort: on", "from search.algorithms import snas  # noqa: F401,E402\n# isort: on"))
    r = subprocess.run([sys.executable, "-c", CHECK], cwd=tmp_path, capture_output=True, text=True,
                       env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"}, timeout=300)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-3000:]
