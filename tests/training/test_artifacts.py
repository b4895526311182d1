"""Optimised Keras serving artifacts: judged at training, chosen and checked at serving."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from modelport import store
from modelport.metadata import Artifact
from training.optimize import judge

KERAS = "breast-cancer-keras"


@pytest.mark.unit
@pytest.mark.parametrize(
    ("score", "accepted"), [(0.95, True), (0.941, True), (0.939, False), (0.97, True)]
)
def test_judge_applies_the_tolerance(tmp_path: Path, score: float, accepted: bool) -> None:
    path = tmp_path / "model.tflite"
    path.write_bytes(b"x" * 100)
    artifact = judge("tflite", path, score, 0.95, "accuracy", 0.01, sample=None)
    assert artifact.accepted is accepted
    assert artifact.delta == pytest.approx(score - 0.95)
    assert artifact.size_bytes == 100
    assert ("within" if accepted else "beyond") in artifact.reason


def _artifact(kind: str, accepted: bool) -> Artifact:
    return Artifact(
        kind=kind,
        path=kind,
        metric="accuracy",
        score=0.9,
        delta=-0.02,
        accepted=accepted,
        reason="test accuracy 0.9000 vs original 0.9200 (-0.0200); beyond tolerance 0.01",
        size_bytes=1,
    )


@pytest.mark.integration
def test_artifact_choice(trained) -> None:
    card = trained[KERAS].card.model_copy(
        update={"artifacts": [_artifact("saved_model", True), _artifact("tflite", False)]}
    )
    assert store.keras_artifact(card, "auto") == "saved_model"
    assert store.keras_artifact(card, "keras") == "keras"
    with pytest.raises(store.StoreError, match=r"no accepted 'tflite' artifact.*beyond tolerance"):
        store.keras_artifact(card, "tflite")
    bare = card.model_copy(update={"artifacts": []})
    assert store.keras_artifact(bare, "auto") == "keras"


@pytest.mark.integration
def test_training_stores_judged_artifacts_that_serve_like_the_original(trained) -> None:
    model = store.resolve(KERAS)
    card = store.card_of(model)
    kinds = {a.kind: a for a in card.artifacts}
    assert set(kinds) == {"saved_model", "tflite"}
    root = Path(model.path)
    for artifact in kinds.values():
        assert artifact.accepted, artifact.reason
        assert (root / artifact.path).exists()
        assert artifact.path in {f.split("/")[0] for f in card.integrity.files}  # hashed
        assert abs(artifact.delta) <= 0.01
    rows = card.sample.instances
    import pandas as pd

    X = pd.DataFrame(rows, columns=card.feature_names)
    native = store.predictor_of(model, card, "keras").predict(X)
    for kind in ("saved_model", "tflite"):
        predictor = store.predictor_of(model, card, kind)
        assert predictor.artifact == kind
        out = predictor.predict(X)
        assert out.predictions == native.predictions
        assert np.allclose(out.probabilities, native.probabilities, atol=0.02)
        # Each artifact's self-test compares with its own recorded outputs.
        assert np.allclose(out.probabilities, kinds[kind].sample.probabilities, atol=1e-5)
    assert store.keras_artifact(card, "auto") == "tflite"
