"""Every sample output in README.md and docs/ is checked against what its command prints today
(tests/doc_samples.py reads them): each ```text block names its command in a marker, and a
test here, or the one named in CHECKED_ELSEWHERE, runs that command and compares."""

from __future__ import annotations

import pytest
from doc_samples import matches, sample_of, samples

SHOW_ERROR = "python -m genotypes show DART_V2"
SUMMARY = "python -m retrain --genotype DARTS_V2 --summary --ratio 2"
#: Samples whose command another test runs anyway (a search takes minutes): command -> test.
CHECKED_ELSEWHERE = {
    "./run_search.sh ../shared/data/cifar10-subset --preset smoke --threads 2 --out "
    "/tmp/search-smoke": "tests/test_search_real.py::test_smoke_preset_on_cifar_subset",
}


def test_every_sample_names_a_command_a_test_checks():
    checked = {SHOW_ERROR, SUMMARY, *CHECKED_ELSEWHERE}
    found = samples()
    assert found, "no ```text sample in README.md or docs/: has the layout changed?"
    for s in found:
        assert s.command is not None, (
            f"{s.where()}: a sample output without a `<!-- sample of: COMMAND -->` marker "
            "line before it; add one and check the sample in tests/test_doc_samples.py")
        assert s.command in checked, f"{s.where()}: no test checks the sample of {s.command!r}"


def test_genotype_error_sample(capsys):
    from genotypes.__main__ import main

    assert main(SHOW_ERROR.split()[3:]) == 2
    err = capsys.readouterr().err.splitlines()
    assert sample_of(SHOW_ERROR).shown == tuple(err)


@pytest.mark.slow
def test_summary_table_sample(capsys):
    """docs/usage.md's table (head and tail): the counts, MACs and sizes to the digit."""
    from retrain.cli import main

    assert main(SUMMARY.split()[3:]) == 0
    problem = matches(sample_of(SUMMARY), capsys.readouterr().out.splitlines())
    assert problem is None, problem
