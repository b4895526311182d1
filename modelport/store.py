"""The BentoML model store as modelport uses it: stages, resolution, cards."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import NoReturn

import bentoml
from bentoml.exceptions import NotFound

from modelport.metadata import ModelCard
from modelport.predictors import Predictor, load_predictor

STAGE = "stage"
PRODUCTION = "production"
STAGING = "staging"
ARCHIVED = "archived"


class StoreError(LookupError):
    """A model that cannot be found or used, with a message for the user."""


def list_models(name: str | None = None) -> list[bentoml.Model]:
    models = bentoml.models.list(name) if name else bentoml.models.list()
    return sorted(models, key=lambda m: m.info.creation_time, reverse=True)


def production_model(name: str) -> bentoml.Model | None:
    try:
        models = list_models(name)
    except NotFound:
        return None
    for model in models:
        if model.info.labels.get(STAGE) == PRODUCTION:
            return model
    return None


def resolve(tag: str) -> bentoml.Model:
    """``name:version`` exactly; ``name`` (or ``name:latest``) means its production
    version, else the newest."""
    name, _, version = tag.partition(":")
    try:
        if version and version != "latest":
            return bentoml.models.get(tag)
        model = production_model(name)
        return model if model is not None else bentoml.models.get(f"{name}:latest")
    except NotFound:
        raise StoreError(f"model {tag!r} is not in the model store") from None


def card_of(model: bentoml.Model) -> ModelCard:
    try:
        return ModelCard.from_metadata(model.info.metadata)
    except ValueError as exc:
        raise StoreError(f"model {model.tag}: {exc}") from None


def keras_artifact(card: ModelCard, wanted: str) -> str:
    """Which serving form of a Keras model to load: ``wanted`` if the card accepted it,
    or for ``auto`` the fastest accepted one (tflite, then saved_model, then keras)."""
    if wanted == "auto":
        return next((k for k in ("tflite", "saved_model") if card.artifact(k)), "keras")
    if wanted != "keras" and card.artifact(wanted) is None:
        _no_artifact(card, wanted)
    return wanted


def _no_artifact(card: ModelCard, wanted: str) -> NoReturn:
    known = (
        ", ".join(f"{a.kind} ({'accepted' if a.accepted else a.reason})" for a in card.artifacts)
        or "none"
    )
    raise StoreError(f"no accepted {wanted!r} artifact; this model has: {known}")


def sklearn_artifact(card: ModelCard, wanted: str) -> str:
    """Which serving form of a scikit-learn model to load: ``onnx`` when asked for and
    accepted, for ``auto`` only when it was also measured faster than the native model
    at training; else ``native``. ``auto`` keeps a model that has a linear form (the card's
    ``linear``: plain arrays, served without scikit-learn) native: that form needs
    neither library, and a few array operations leave ONNX Runtime nothing to gain
    beyond timing noise."""
    onnx = card.artifact("onnx")
    if wanted == "auto":
        if card.linear is not None:
            return "native"
        faster = onnx is not None and onnx.latency is not None and onnx.latency.faster
        return "onnx" if faster else "native"
    if wanted == "onnx" and onnx is None:
        _no_artifact(card, wanted)
    return wanted


def predictor_of(
    model: bentoml.Model, card: ModelCard, artifact: str = "keras", sklearn_kind: str = "native"
) -> Predictor:
    """The model's predictor; ``artifact`` picks a Keras model's serving form (see
    :func:`keras_artifact`), ``sklearn_kind`` a scikit-learn one's (:func:`sklearn_artifact`)."""
    if card.framework == "sklearn" and sklearn_artifact(card, sklearn_kind) == "onnx":
        from modelport.onnx_predictor import OnnxPredictor

        return OnnxPredictor.load(
            Path(model.path),
            card.task,
            card.classes,
            card.feature_names,
            native=lambda: predictor_of(model, card),  # for explanations, on first use
        )
    kind = keras_artifact(card, artifact) if card.framework == "keras" else "native"
    predictor = load_predictor(Path(model.path), card.framework, card.task, card.classes, kind)
    predictor.feature_names = card.feature_names
    return predictor


def write_info(model: bentoml.Model) -> None:
    # Replace model.yaml atomically so a crash never leaves a half-written file.
    path = Path(model.path) / "model.yaml"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".model.yaml.")
    try:
        with os.fdopen(fd, "w", encoding="utf8") as fh:
            model.info.dump(fh)
        os.chmod(tmp, path.stat().st_mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def set_stage(model: bentoml.Model, stage: str) -> None:
    model.info.labels[STAGE] = stage
    write_info(model)


def promote(tag: str) -> tuple[bentoml.Model, list[bentoml.Model]]:
    """Label one version production, archiving any other production version of it."""
    name, _, version = tag.partition(":")
    if not version:
        raise StoreError(f"promote needs NAME:VERSION, got {tag!r}")
    model = resolve(tag)
    card_of(model)  # refuse models modelport did not train
    demoted = [
        m
        for m in list_models(name)
        if m.tag != model.tag and m.info.labels.get(STAGE) == PRODUCTION
    ]
    set_stage(model, PRODUCTION)
    for old in demoted:
        set_stage(old, ARCHIVED)
    return model, demoted
