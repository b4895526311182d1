"""`modelport build`: the bento pins exact model versions and only serving deps."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from modelport import bento, store
from tests.conftest import ROOT

pytestmark = pytest.mark.integration


def test_config_pins_versions_and_keeps_tensorflow_only_for_keras(trained) -> None:
    sk = bento.build_config(ROOT / "bentofile.yaml", ["breast-cancer", "diabetes"])
    exact = [str(store.resolve("breast-cancer").tag), str(store.resolve("diabetes").tag)]
    assert sk["models"] == exact
    assert {"name": "MODELPORT_MODELS", "value": ",".join(exact)} in sk["envs"]
    assert not any(p.startswith(("tensorflow", "ai-edge-litert")) for p in sk["python"]["packages"])
    # Both are linear: their explanations are closed-form, the image needs no shap.
    assert not any(p.startswith("shap") for p in sk["python"]["packages"])
    full = bento.build_config(ROOT / "bentofile.yaml")
    assert len(full["models"]) == 3
    assert any(p.startswith("tensorflow") for p in full["python"]["packages"])
    assert any(p.startswith("ai-edge-litert") for p in full["python"]["packages"])
    assert any(p.startswith("shap") for p in full["python"]["packages"])  # Keras: sampled
    assert not any(p.startswith(("matplotlib", "typer")) for p in full["python"]["packages"])


def test_unknown_model_is_a_clear_error(trained) -> None:
    with pytest.raises(store.StoreError, match="model 'nope' is not in the model store"):
        bento.build_config(ROOT / "bentofile.yaml", ["nope"])


@pytest.mark.slow
def test_build_produces_a_bento_with_the_pinned_models(trained) -> None:
    import bentoml

    tag = bento.build(ROOT, ["breast-cancer", "diabetes"])
    built = bentoml.get(tag)
    info = yaml.safe_load((Path(built.path) / "bento.yaml").read_text())
    assert [m["tag"] for m in info["models"]] == [
        str(store.resolve("breast-cancer").tag),
        str(store.resolve("diabetes").tag),
    ]
    reqs = (Path(built.path) / "env" / "python" / "requirements.txt").read_text().lower()
    assert "scikit-learn" in reqs and "tensorflow" not in reqs and "matplotlib" not in reqs
    src = {
        p.relative_to(Path(built.path) / "src").as_posix()
        for p in (Path(built.path) / "src").rglob("*.py")
    }
    assert "service/service.py" in src and "modelport/metadata.py" in src
    assert not any(p.startswith(("training/", "tests/")) for p in src)


def test_onnxruntime_only_in_images_that_serve_an_onnx_form(trained, tmp_path: Path) -> None:
    config = yaml.safe_load((ROOT / "bentofile.yaml").read_text())

    def packages(setting: str) -> list[str]:
        envs = [e for e in config["envs"] if e["name"] != "MODELPORT_SKLEARN_ARTIFACT"]
        path = tmp_path / f"bentofile-{setting}.yaml"
        value = {"name": "MODELPORT_SKLEARN_ARTIFACT", "value": setting}
        path.write_text(yaml.safe_dump({**config, "envs": [*envs, value]}))
        built = bento.build_config(path, ["breast-cancer", "diabetes"])
        return [p for p in built["python"]["packages"] if p.startswith("onnxruntime")]

    assert packages("onnx") == ["onnxruntime>=1.17,<2"]  # both recipes have accepted ones
    assert packages("native") == []
    cards = [store.card_of(store.resolve(n)) for n in ("breast-cancer", "diabetes")]
    auto = any(store.sklearn_artifact(c, "auto") == "onnx" for c in cards)
    assert bool(packages("auto")) is auto  # as fast as training measured them
