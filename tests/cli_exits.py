"""One check for every CLI test that expects the command to stop: the exit status, and a
message of exactly one line on stderr (an `error: ...` line, never a traceback, for status 2)."""

from __future__ import annotations

from collections.abc import Callable

import pytest


def one_line_exit(main: Callable[[list[str]], object], argv: list[str], capsys,
                  code: int = 2) -> str:
    """Run `main(argv)`, expect SystemExit(code) and one line on stderr; return that line."""
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err.strip()
    assert e.value.code == code, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    if code == 2:
        assert err.startswith("error: "), err
    return err
