"""The BentoML model store as modelport uses it: stages, resolution, cards."""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn

import bentoml
import yaml
from bentoml.exceptions import NotFound

from modelport.metadata import ModelCard
from modelport.predictors import Predictor, load_predictor

STAGE = "stage"
PRODUCTION = "production"
STAGING = "staging"
ARCHIVED = "archived"


class StoreError(LookupError):
    """A model that cannot be found or used, with a message for the user."""


@dataclass(frozen=True)
class StoredInfo:
    """What modelport reads of a version's model.yaml (named as on ``bentoml.Model.info``)."""

    labels: dict[str, str]
    metadata: dict[str, Any]
    creation_time: datetime


@dataclass(frozen=True)
class Stored:
    """One model version as the store holds it: enough to check and serve it, read
    without building a ``bentoml.Model`` (``tag``, ``path`` and ``info`` as there)."""

    tag: str
    path: str
    info: StoredInfo


# libyaml's parser where PyYAML has it. BentoML parses model.yaml in pure Python: with
# the card in it (20-90 KB) that takes 30-120 ms per version, and resolving a name reads
# every version (a service start spent ~0.3 s of its 1.9 s there).
_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _store_dir() -> Path | None:
    """The folder of the model store BentoML uses here (a bento's own when serving a
    bento), or ``None`` if this BentoML keeps it elsewhere (then its API is used)."""
    from bentoml._internal.configuration.containers import BentoMLContainer

    folder = getattr(BentoMLContainer.model_store.get(), "_path", None)
    return Path(folder) if isinstance(folder, str | Path) else None


def _read(folder: Path) -> Stored | None:
    """The version in ``folder`` (``None``: not a model version)."""
    try:
        with (folder / "model.yaml").open(encoding="utf8") as fh:
            info = yaml.load(fh, Loader=_LOADER)  # a safe loader (libyaml or PyYAML)
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        created = info["creation_time"]  # an ISO string, as BentoML writes it
        if not isinstance(created, datetime):
            created = datetime.fromisoformat(created)
        tag = f"{info['name']}:{info['version']}"
        labels = {str(k): str(v) for k, v in (info.get("labels") or {}).items()}
        metadata = dict(info.get("metadata") or {})
    except (TypeError, KeyError, ValueError, AttributeError):
        return _of(bentoml.models.Model.from_path(str(folder)))  # BentoML's own reading
    return Stored(tag, str(folder), StoredInfo(labels, metadata, created))


def _of(model: bentoml.Model) -> Stored:
    info = model.info
    return Stored(
        str(model.tag),
        str(model.path),
        StoredInfo(dict(info.labels), dict(info.metadata), info.creation_time),
    )


# A tag's name or version as BentoML writes it to disk (others go through its API,
# which lowercases and validates them).
_PLAIN = re.compile(r"[a-z0-9](?:[a-z0-9._-]*[a-z0-9])?")


def _folder(*parts: str) -> Path | None:
    """The store's folder for a name (and version), if every part is plain."""
    folder = _store_dir()
    if folder is None or not all(_PLAIN.fullmatch(p) for p in parts):
        return None
    return folder.joinpath(*parts)


def _versions(name: str) -> list[Stored]:
    """Every version of ``name``, newest first (raises NotFound when there is none)."""
    folder = _folder(name)
    if folder is None:
        return [_of(m) for m in list_models(name)]
    found = [v for d in folder.iterdir() if (v := _read(d)) is not None] if folder.is_dir() else []
    if not found:
        raise NotFound(f"no models with name {name!r} found")
    return sorted(found, key=lambda v: v.info.creation_time, reverse=True)


def _production(versions: list[Stored]) -> Stored | None:
    return next((v for v in versions if v.info.labels.get(STAGE) == PRODUCTION), None)


def _latest(name: str, versions: list[Stored]) -> Stored:
    """The version BentoML's ``name:latest`` means: the one its marker file names,
    else the newest."""
    folder = _folder(name)
    try:
        marked = (folder / "latest").read_text().strip() if folder else ""
    except OSError:
        marked = ""
    return next((v for v in versions if v.tag == f"{name}:{marked}"), versions[0])


def list_models(name: str | None = None) -> list[bentoml.Model]:
    models = bentoml.models.list(name) if name else bentoml.models.list()
    return sorted(models, key=lambda m: m.info.creation_time, reverse=True)


def production_model(name: str) -> bentoml.Model | None:
    try:
        found = _production(_versions(name))
    except NotFound:
        return None
    return None if found is None else bentoml.models.get(found.tag)


def find(tag: str) -> Stored:
    """``name:version`` exactly (or a unique prefix of the version); ``name`` (or
    ``name:latest``) means its production version, else the newest."""
    name, _, version = tag.partition(":")
    try:
        if version and version != "latest":
            folder = _folder(name, version)
            found = _read(folder) if folder else None
            return found if found is not None else _of(bentoml.models.get(tag))
        versions = _versions(name)
        return _production(versions) or _latest(name, versions)
    except NotFound:
        raise StoreError(f"model {tag!r} is not in the model store") from None


def resolve(tag: str) -> bentoml.Model:
    """The ``bentoml.Model`` of the version :func:`find` names."""
    try:
        return bentoml.models.get(find(tag).tag)
    except NotFound:
        raise StoreError(f"model {tag!r} is not in the model store") from None


def card_of(model: bentoml.Model | Stored) -> ModelCard:
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
    model: bentoml.Model | Stored,
    card: ModelCard,
    artifact: str = "keras",
    sklearn_kind: str = "native",
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
