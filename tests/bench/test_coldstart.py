"""bench.coldstart's own logic: the revision it serves, and its summary."""

from __future__ import annotations

import pytest

from bench.coldstart import Start, _summary, revision

pytestmark = pytest.mark.unit


def test_a_revision_is_its_committed_files() -> None:
    with revision("HEAD") as tree:
        assert (tree / "service" / "service.py").is_file()
        assert (tree / "modelport" / "store.py").is_file()
        assert not (tree / ".git").exists()
    assert not tree.exists()


def test_summary_takes_medians_and_the_range() -> None:
    starts = [Start(1.5, 1.4, 20), Start(1.3, 1.2, 90), Start(2.9, 1.3, 1500)]
    assert _summary(starts) == {
        "seconds": 1.5,
        "min_seconds": 1.3,
        "max_seconds": 2.9,
        "cpu_seconds": 1.3,
        "cpu_wait_ms": 90,
    }
