"""Shared fixtures. Every test session gets its own BentoML home, so tests never
touch a user's model store."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

# BentoML reads BENTOML_HOME when it is first imported: set it before any test module
# imports bentoml.
_HOME = Path(tempfile.mkdtemp(prefix="modelport-test-bentoml-"))
os.environ["BENTOML_HOME"] = str(_HOME)
os.environ["BENTOML_DO_NOT_TRACK"] = "True"
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"

ROOT = Path(__file__).resolve().parents[1]
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    shutil.rmtree(_HOME, ignore_errors=True)


@pytest.fixture(scope="session")
def bentoml_home() -> Path:
    return _HOME


@pytest.fixture(scope="session")
def settings(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    from modelport.settings import TrainingSettings

    return TrainingSettings(reports_dir=tmp_path_factory.mktemp("reports"))


@pytest.fixture(scope="session")
def trained(settings) -> dict[str, object]:  # type: ignore[no-untyped-def]
    """The three demo recipes, trained once per session and promoted to production."""
    from rich.console import Console

    from modelport import store
    from training.data import Dataset, frame_sha256, validate_frame
    from training.recipes import RECIPES
    from training.run import train

    results = {}
    console = Console(quiet=True)
    for name, recipe in RECIPES.items():
        frame = recipe.load()
        X, y, task = validate_frame(
            frame,
            recipe.target,
            source=name,
            task=recipe.task,
            min_rows=settings.min_rows,
            max_categories=settings.max_categories,
        )
        data = Dataset(X, y, task, name, frame_sha256(frame))
        result = train(
            data, name=name, framework=recipe.framework, settings=settings, console=console
        )
        assert result.registered, result.gate.failures
        store.promote(result.tag)
        results[name] = result
    return results
