"""`modelport rollout` as a user runs it: bad input is one line on stderr and exit 2."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration


def test_cli_bad_input_is_one_line() -> None:
    """Unreachable Prometheus, a bad threshold: one line on stderr, exit 2."""
    for args in (
        ["--model", "m", "--prometheus", "http://127.0.0.1:9"],
        ["--model", "m", "--threshold", "max_psi=x"],
        ["--model", "m", "--window", "soon"],
    ):
        proc = subprocess.run(
            [sys.executable, "-m", "modelport", "rollout", "analyze", *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
