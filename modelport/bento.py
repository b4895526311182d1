"""Building the bento: bentofile.yaml with its models pinned to exact versions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from modelport import store
from modelport.metadata import ModelCard


def build_config(bentofile: Path, tags: list[str] | None = None) -> dict[str, Any]:
    """The bentofile's build options with models resolved to ``name:version``.

    Exact tags go both into the bento's model list and into ``MODELPORT_MODELS``, so
    the image serves precisely what was built; TensorFlow and the TFLite interpreter
    are dropped when no Keras model is included (sklearn-only images stay small), shap
    when every model has exact linear explanations, and onnxruntime when no model will
    serve its ONNX form (``MODELPORT_SKLEARN_ARTIFACT`` as the bentofile sets it).
    """
    try:
        config = yaml.safe_load(bentofile.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise store.StoreError(f"{bentofile}: cannot read: {exc}") from None
    wanted = tags or [str(m) for m in config.get("models", [])]
    resolved = [store.resolve(t) for t in wanted]
    exact = [str(m.tag) for m in resolved]
    config["models"] = exact
    cards = [store.card_of(m) for m in resolved]
    keras = any(c.framework == "keras" for c in cards)
    # shap (with numba, ~100 MB) only where a model's explanations need it: exact linear
    # ones are closed-form; trees and sampled methods use shap. Training recorded each
    # model's method with its importance.
    shap = any(c.importance is None or c.importance.method != "linear-exact" for c in cards)
    onnx = any(_serves_onnx(c, _env(config, "MODELPORT_SKLEARN_ARTIFACT", "auto")) for c in cards)
    python = config.setdefault("python", {})
    python["packages"] = [
        p
        for p in python.get("packages", [])
        if (keras or not p.startswith(("tensorflow", "ai-edge-litert")))
        and (shap or not p.startswith("shap"))
        and (onnx or not p.startswith("onnxruntime"))
    ]
    envs = [e for e in config.get("envs", []) if e.get("name") != "MODELPORT_MODELS"]
    config["envs"] = [{"name": "MODELPORT_MODELS", "value": ",".join(exact)}, *envs]
    return config


def _env(config: dict[str, Any], name: str, default: str) -> str:
    return next(
        (str(e.get("value")) for e in config.get("envs", []) if e.get("name") == name), default
    )


def _serves_onnx(card: ModelCard, wanted: str) -> bool:
    """Whether the image's setting serves this model in its ONNX Runtime form (the
    image then needs onnxruntime)."""
    if card.framework != "sklearn":
        return False
    try:
        return store.sklearn_artifact(card, wanted) == "onnx"
    except store.StoreError:  # asked for but refused: the model will not serve at all
        return False


def build(project: Path, tags: list[str] | None = None) -> str:
    """Build from a pinned copy of bentofile.yaml (the original stays untouched)."""
    import tempfile

    import bentoml

    config = build_config(project / "bentofile.yaml", tags)
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", prefix="bentofile-") as pinned:
        yaml.safe_dump(config, pinned, sort_keys=False)
        pinned.flush()
        bento = bentoml.bentos.build_bentofile(pinned.name, build_ctx=str(project))
    return str(bento.tag)
