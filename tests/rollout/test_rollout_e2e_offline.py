"""The cluster canary run (tests/chart/test_chart_e2e_canary.py) collects and its fixtures
resolve without a cluster: a broken import or fixture fails here, not first on a cluster."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.chart


def test_canary_e2e_collects_and_its_fixtures_resolve() -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-q",
            "-m",
            "e2e",
            "--setup-plan",
            "tests/chart/test_chart_e2e_canary.py",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode in (0, 5), proc.stdout + proc.stderr
    assert "ERROR" not in proc.stdout, proc.stdout
    assert "test_canary_start_analyze_promote_then_abort" in proc.stdout
    # Imported from the main e2e module, its own test must not run twice.
    assert "test_install_upgrade_under_load_rollbacks_uninstall" not in proc.stdout
