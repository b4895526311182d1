"""Loading, checking and calling the served models (no HTTP here)."""

from __future__ import annotations

import gc
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from modelport.metadata import ModelCard, verify_model_files
from modelport.predictors import Output, Predictor
from modelport.settings import ServiceSettings
from service.monitoring import Flusher, ModelMetrics, Registry, families, prediction_buckets
from service.transport import InputError, show
from service.validation import Batch, Schema, parse_instances

log = logging.getLogger("modelport")


class ModelLoadError(RuntimeError):
    """A model that must not serve: the message says which and why."""


@dataclass
class ServedModel:
    name: str
    version: str
    card: ModelCard
    schema: Schema
    predictor: Predictor
    metrics: ModelMetrics

    @property
    def tag(self) -> str:
        return f"{self.name}:{self.version}"

    _explainer: Any = field(default=None, repr=False)
    _explainer_error: str | None = field(default=None, repr=False)

    @property
    def built_explainer(self) -> Any:
        return self._explainer

    def explainer(self) -> Any:
        """This model's explainer, built on first use (sampled ones warm up for seconds
        and import shap: never in a worker that is not asked for an explanation)."""
        if self._explainer is None and self._explainer_error is None:
            from modelport.explain import ExplainError, explainer_for

            try:
                # The ONNX form is explained through the pipeline it was converted from.
                native = (
                    getattr(self.predictor, "native", None)
                    if self.predictor.artifact == "onnx"
                    else None
                )
                self._explainer = explainer_for(native or self.predictor, self.card)
                log.info("model %s: explanations by %s", self.tag, self._explainer.method)
                # What this loaded (scikit-learn for a model served from its linear
                # form, shap, the explainer) stays for good: out of the collector's
                # view like the models (service.service), or every full collection
                # scans it (~60 ms pauses about once a second under load).
                gc.freeze()
            except ExplainError as exc:
                self._explainer_error = str(exc)
                log.warning("model %s: no explanations: %s", self.tag, exc)
        if self._explainer is None:
            raise InputError(
                f"model {self.tag}: explanations are unavailable: {self._explainer_error}",
                status=503,
            )
        return self._explainer

    def predict(self, batch: Batch) -> Output:
        self.metrics.observe_inputs(batch)
        if batch.imputed:
            self.metrics.observe_missing(list(batch.imputed))
        start = time.perf_counter()
        out = self.predictor.predict(batch.model_input)
        self.metrics.observe_outputs(out, time.perf_counter() - start)
        return out


@dataclass
class _Loaded:
    tag: str
    card: ModelCard
    schema: Schema
    predictor: Predictor


def _load(tag: str, settings: ServiceSettings) -> _Loaded:
    from modelport import store

    try:
        model = store.find(tag)  # model.yaml read by libyaml, not as a bentoml.Model
        card = store.card_of(model)
    except store.StoreError as exc:
        raise ModelLoadError(str(exc)) from None
    if not card.integrity.files:
        raise ModelLoadError(f"model {model.tag}: no file hashes recorded; refusing to serve it")
    problems = verify_model_files(Path(model.path), card.integrity.files)
    if problems:
        raise ModelLoadError(f"model {model.tag}: integrity check failed: {'; '.join(problems)}")
    from modelport.signing import SignatureError, check_on_load

    try:  # with MODELPORT_VERIFY_KEY: the signature over the files and the card
        check_on_load(Path(model.path), model.info.metadata, settings.verify_key)
    except SignatureError as exc:
        raise ModelLoadError(f"model {model.tag}: {exc}") from None
    onnx = _onnx_predictor(model, card, settings) if card.framework == "sklearn" else None
    if onnx is not None:
        return _Loaded(str(model.tag), card, Schema(card), onnx)
    schema = Schema(card)
    linear = (
        _linear_predictor(Path(model.path), card, str(model.tag)) if schema.all_numeric else None
    )
    if linear is not None:
        return _Loaded(str(model.tag), card, schema, linear)
    import sklearn

    # Requests are checked for non-finite values before any model sees them, and
    # parameters were validated at fit time: skip both checks on every call.
    sklearn.set_config(assume_finite=True, skip_parameter_validation=True)
    try:
        predictor = store.predictor_of(model, card, settings.keras_artifact)
    except Exception as exc:  # any loader failure keeps the pod unready, with the reason
        raise ModelLoadError(f"model {model.tag}: cannot load: {exc}") from None
    if schema.all_numeric:
        why = _enable_fast_path(predictor, card)
        if why:
            log.info("model %s: array fast path off (%s)", model.tag, why)
    return _Loaded(str(model.tag), card, schema, predictor)


def _sample_arrays(card: ModelCard) -> tuple[np.ndarray, np.ndarray]:
    """The card's sample as a float array in feature order, and its recorded scores."""
    X = np.array(
        [[row[n] for n in card.feature_names] for row in card.sample.instances], dtype=float
    )
    recorded = (
        card.sample.probabilities if card.task == "classification" else card.sample.predictions
    )
    return X, np.asarray(recorded, dtype=float)


def _linear_predictor(model_dir: Path, card: ModelCard, tag: str) -> Predictor | None:
    """The model served from its card's linear form, its pickle (and scikit-learn,
    about 1 s of a cold start) left unread until an explanation needs it; ``None``
    when the card has no linear form or it does not reproduce the recorded outputs."""
    from modelport.predictors import deferred_sklearn

    if card.framework != "sklearn" or card.linear is None:
        return None
    predictor = deferred_sklearn(model_dir, card.task, card.classes)
    why = predictor.use_linear_form(
        card.linear.model_dump(), card.feature_names, *_sample_arrays(card)
    )
    if why:
        log.warning("model %s: %s; loading the pickled pipeline instead", tag, why)
        return None
    return predictor


def _onnx_predictor(model: Any, card: ModelCard, settings: ServiceSettings) -> Predictor | None:
    """The ONNX Runtime form when MODELPORT_SKLEARN_ARTIFACT picks it for this model
    (``store.sklearn_artifact``), else ``None``; one asked for by name that training
    refused, or that cannot load, keeps the model unready with the reason."""
    from modelport import store

    try:
        if store.sklearn_artifact(card, settings.sklearn_artifact) != "onnx":
            return None
        return store.predictor_of(model, card, sklearn_kind="onnx")
    except Exception as exc:  # any loader failure keeps the pod unready, with the reason
        raise ModelLoadError(f"model {model.tag}: cannot load: {exc}") from None


def _enable_fast_path(predictor: Predictor, card: ModelCard) -> str | None:
    if card.framework == "sklearn":
        # Checked against the recorded sample outputs: no pandas in an sklearn worker.
        return predictor.enable_fast_path(card.feature_names, *_sample_arrays(card))
    import pandas as pd  # Keras: its preprocessor is compared on a frame

    sample = pd.DataFrame(card.sample.instances, columns=card.feature_names).astype(float)
    return predictor.enable_fast_path(card.feature_names, sample)


def self_test(loaded: _Loaded, tolerance: float) -> None:
    """Reproduce the recorded sample output, or raise."""
    card = loaded.card
    batch = parse_instances(
        card.sample.instances, loaded.schema, max_rows=len(card.sample.instances)
    )
    out = loaded.predictor.predict(batch.model_input)
    artifact = card.artifact(loaded.predictor.artifact)
    # An optimised artifact reproduces its own recorded outputs, not the original's.
    expected = artifact.sample if artifact is not None and artifact.sample else card.sample
    if card.task == "regression":
        ok = np.allclose(out.predictions, expected.predictions, rtol=tolerance, atol=tolerance)
    else:
        ok = [str(p) for p in out.predictions] == [str(p) for p in expected.predictions]
        if ok and expected.probabilities is not None and out.probabilities is not None:
            ok = np.allclose(out.probabilities, expected.probabilities, atol=tolerance)
    if not ok:
        raise ModelLoadError(
            f"model {loaded.tag}: self-test failed: the stored sample input no longer gives "
            f"the recorded output (got {out.predictions[:3]}, recorded "
            f"{expected.predictions[:3]})"
        )


@dataclass
class ModelSet:
    """The models this process serves, and the ones that failed (which keep it unready)."""

    settings: ServiceSettings
    models: dict[str, ServedModel] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    registry: Registry | None = None
    flusher: Flusher | None = None

    @classmethod
    def load(cls, settings: ServiceSettings) -> ModelSet:
        # What the worker has loaded by now (BentoML's app, its clients) stays: out of
        # the collector's view, or a full collection while the cards are read scans it.
        gc.freeze()
        result = cls(settings)
        loaded: list[_Loaded] = []
        tags = settings.model_tags()
        if not tags:
            result.failures["(none)"] = "MODELPORT_MODELS names no model"
            log.error("not ready: MODELPORT_MODELS names no model")
        for tag in tags:
            try:
                item = _load(tag, settings)
                self_test(item, settings.selftest_tolerance)
                loaded.append(item)
            except Exception as exc:  # one clear line per failed model, never a crash
                reason = str(exc) if isinstance(exc, ModelLoadError) else f"{tag}: {exc!r}"
                result.failures[tag] = reason
                log.error("model not ready: %s", reason)
        result.registry = families(prediction_buckets([i.card for i in loaded]))
        for item in loaded:
            name, version = item.tag.split(":", 1)
            metrics = ModelMetrics(
                result.registry,
                name,
                version,
                item.card,
                settings.monitored_features,
                settings.monitoring,
                settings.variant,
            )
            result.models[name] = ServedModel(
                name, version, item.card, item.schema, item.predictor, metrics
            )
            log.info(
                "serving %s (%s %s, %s)",
                item.tag,
                item.card.framework,
                item.card.task,
                item.predictor.artifact,
            )
        if settings.monitoring and settings.drift_flush_seconds > 0 and result.models:
            result.flusher = Flusher(
                [m.metrics for m in result.models.values()], settings.drift_flush_seconds
            ).start()
        return result

    @property
    def ready(self) -> bool:
        return bool(self.models) and not self.failures

    def resolve(self, name: Any, version: Any = None) -> ServedModel:
        """The one model lookup of every route (one message for each way it fails)."""
        found = self.models.get(name) if isinstance(name, str) else None
        if found is None:
            served = ", ".join(sorted(self.models)) or "(none)"
            if name is None:
                if len(self.models) != 1:
                    raise InputError(
                        f"model: required when several models are served; one of: {served}"
                    )
                found = next(iter(self.models.values()))
            elif not isinstance(name, str):
                raise InputError(f"model: expected a model name (a string), got {show(name)}")
            else:
                raise InputError(
                    f"model: {show(name)} is not served here; served models: {served}",
                    status=404,
                )
        if version is not None and version != found.version:
            raise InputError(
                f"model_version: {found.name} version {show(version)} is not served here; "
                f"served version: {found.version}",
                status=404,
            )
        return found

    def describe(self) -> list[dict[str, Any]]:
        return [
            {
                "name": m.name,
                "version": m.version,
                "framework": m.card.framework,
                "artifact": m.predictor.artifact,  # the serving form (onnx, tflite, native...)
                "task": m.card.task,
                "classes": m.card.classes,
                "features": m.card.feature_names,
                "sample": {"model": m.name, "instances": m.card.sample.instances[:1]},
            }
            for m in self.models.values()
        ]
