"""promtool checks of the PrometheusRule the chart renders: `promtool check rules` and the
unit tests in promtool/*.test.yaml, whose input series are shaped like the service's
/metrics output plus the target labels Prometheus adds (job, namespace, pod, instance).

The rule groups are extracted from `helm template`, never kept as a second copy."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from .chartlib import Renderer, one

pytestmark = pytest.mark.chart

TESTS_DIR = Path(__file__).parent / "promtool"
TEST_FILES = sorted(TESTS_DIR.glob("*.test.yaml"))
APIS = ("monitoring.coreos.com/v1/PrometheusRule",)


@pytest.fixture(scope="module")
def groups(render: Renderer) -> list[dict]:
    docs = render(None, *(f"--api-versions={api}" for api in APIS))
    return one(docs, "PrometheusRule")["spec"]["groups"]


@pytest.fixture(scope="module")
def workdir(groups: list[dict], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """rules.yaml beside copies of the test files (promtool resolves rule_files there)."""
    path = tmp_path_factory.mktemp("promtool")
    (path / "rules.yaml").write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    for test_file in TEST_FILES:
        shutil.copy(test_file, path / test_file.name)
    return path


def promtool_run(promtool: str, cwd: Path, *args: str) -> str:
    proc = subprocess.run(
        [promtool, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_check_rules(promtool: str, workdir: Path) -> None:
    out = promtool_run(promtool, workdir, "check", "rules", "rules.yaml")
    assert "SUCCESS" in out


@pytest.mark.parametrize("test_file", TEST_FILES, ids=lambda p: p.name)
def test_rule_unit_tests(promtool: str, workdir: Path, test_file: Path) -> None:
    promtool_run(promtool, workdir, "test", "rules", test_file.name)


def test_every_rule_is_unit_tested(groups: list[dict]) -> None:
    """Each alert is tested firing and not firing; each recording rule is evaluated."""
    records = {r["record"] for g in groups for r in g["rules"] if "record" in r}
    alerts = {r["alert"] for g in groups for r in g["rules"] if "alert" in r}
    assert len(alerts) == 8
    fired: set[str] = set()
    quiet: set[str] = set()
    evaluated = ""
    for test_file in TEST_FILES:
        for case in yaml.safe_load(test_file.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (fired if check.get("exp_alerts") else quiet).add(check["alertname"])
            evaluated += " ".join(e["expr"] for e in case.get("promql_expr_test", []))
    assert not alerts - fired, f"never tested firing: {sorted(alerts - fired)}"
    assert not alerts - quiet, f"never tested quiet: {sorted(alerts - quiet)}"
    untested = {r for r in records if r not in evaluated}
    assert not untested, f"recording rules never evaluated: {sorted(untested)}"
