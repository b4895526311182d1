"""The shared model card: bins, hashes and round-trips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from modelport.metadata import (
    assign_bins,
    hash_model_files,
    quantile_bins,
    verify_model_files,
)

pytestmark = pytest.mark.unit


def test_quantile_bins_split_training_data_evenly() -> None:
    values = np.arange(1000, dtype=float)
    bins = quantile_bins("f", values, 10)
    assert len(bins.edges) == 9
    assert bins.ratios == pytest.approx([0.1] * 10, abs=0.002)
    assert sum(bins.ratios) == pytest.approx(1.0)


def test_quantile_bins_merge_ties() -> None:
    values = np.array([0.0] * 50 + [1.0] * 50)
    bins = quantile_bins("binary", values, 10)
    assert bins.edges == [0.0]
    assert bins.ratios == [0.5, 0.5]
    # Every training value falls in a bin that has a non-zero training share.
    idx = assign_bins(bins.edges, values)
    assert all(bins.ratios[i] > 0 for i in np.unique(idx))


def test_no_reference_bin_is_empty() -> None:
    rng = np.random.default_rng(1)
    for values in (rng.integers(0, 4, 500).astype(float), rng.exponential(size=500)):
        bins = quantile_bins("f", values, 10)
        assert min(bins.ratios) > 0


def test_assign_bins_edges_are_inclusive_on_the_right() -> None:
    edges = [1.0, 2.0]
    assert assign_bins(edges, np.array([0.5, 1.0, 1.5, 2.0, 9.0])).tolist() == [0, 0, 1, 1, 2]


def test_hashes_detect_tampering(tmp_path: Path) -> None:
    (tmp_path / "model.yaml").write_text("not hashed")
    (tmp_path / "weights.bin").write_bytes(b"\x00\x01")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "x.txt").write_text("x")
    recorded = hash_model_files(tmp_path)
    assert set(recorded) == {"weights.bin", "sub/x.txt"}
    assert verify_model_files(tmp_path, recorded) == []
    (tmp_path / "model.yaml").write_text("metadata may change (labels)")
    assert verify_model_files(tmp_path, recorded) == []
    (tmp_path / "weights.bin").write_bytes(b"\x00\x02")
    assert verify_model_files(tmp_path, recorded) == ["weights.bin: sha256 mismatch"]
    (tmp_path / "sub" / "x.txt").unlink()
    (tmp_path / "extra").write_text("?")
    problems = verify_model_files(tmp_path, recorded)
    assert "sub/x.txt: missing" in problems and "extra: not recorded" in problems
