"""The model card's value rules at serving, over real HTTP: a null for an imputed
feature is accepted and counted, ISO dates are taken, unknown categories follow the
model's policy (error: a 400 naming the feature, value and known categories)."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from tests.service.test_ops import value

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def mixed_model(trained, tmp_path_factory) -> str:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(3)
    n = 160
    size = rng.normal(10, 3, n)
    colour = rng.choice(["red", "green", "blue"], n)
    day = pd.date_range("2023-01-01", periods=n, freq="D").strftime("%Y-%m-%d")
    label = np.where(size + (colour == "red") * 4 > 12, "big", "small")
    frame = pd.DataFrame({"size": size, "colour": colour, "day": day, "label": label})
    frame.loc[::9, "size"] = np.nan  # some missing: imputed with the median
    path = tmp_path_factory.mktemp("mixed") / "mixed.csv"
    frame.to_csv(path, index=False)
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "modelport",
            "train",
            "--csv",
            str(path),
            "--target",
            "label",
            "--name",
            "mixed",
            "--promote",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "MODELPORT_REPORTS_DIR": str(path.parent / "reports")},
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return "mixed"


def test_value_rules_at_serving(mixed_model, start_server) -> None:
    s = start_server(mixed_model)
    row = {"size": 11.0, "colour": "red", "day": "2023-03-01"}
    with s.client() as c:
        before = c.get("/metrics").text
        ok = c.post("/predict", json={"instances": [row, {**row, "size": None}]})
        assert ok.status_code == 200, ok.text
        assert len(ok.json()["predictions"]) == 2
        dated = c.post("/predict", json={"instances": [{**row, "day": "2024-03-01T12:30:00Z"}]})
        assert dated.status_code == 200, dated.text
        bad_day = c.post("/predict", json={"instances": [{**row, "day": "01/03/2024"}]})
        assert bad_day.status_code == 400
        assert "instances[0].day: expected an ISO 8601 date" in bad_day.json()["error"]
        purple = c.post("/predict", json={"instances": [row, {**row, "colour": "purple"}]})
        assert purple.status_code == 400
        message = purple.json()["error"]
        assert "instances[1].colour: unknown category 'purple'" in message
        assert "'blue'" in message and "'red'" in message
        v2 = c.post(
            "/v2/models/mixed/infer",
            json={
                "inputs": [
                    {"name": "size", "shape": [1], "datatype": "FP64", "data": [11.0]},
                    {"name": "colour", "shape": [1], "datatype": "BYTES", "data": ["purple"]},
                    {"name": "day", "shape": [1], "datatype": "BYTES", "data": ["2023-03-01"]},
                ]
            },
        )
        assert v2.status_code == 400 and "(colour).data[0]: unknown category" in v2.json()["error"]
        after = c.get("/metrics").text
    added = value(after, "modelport_missing_values_total", feature="size") - value(
        before, "modelport_missing_values_total", feature="size"
    )
    assert added == 1
