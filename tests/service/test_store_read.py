"""Reading the model store the way the service starts: model.yaml parsed by libyaml
into ``store.Stored``, which must say what BentoML's own reading says."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import bentoml
import pytest
import yaml

from modelport import store

pytestmark = pytest.mark.integration

NAME = "store-read"
METADATA = {"card": {"features": [{"name": f"f{i}", "min": i / 3} for i in range(50)]}}


def _save(name: str, **labels: str) -> str:
    with bentoml.models.create(name, labels=labels, metadata=METADATA) as model:
        Path(model.path, "weights.bin").write_bytes(b"0")
    time.sleep(0.01)  # distinct creation times
    return str(model.tag)


@pytest.fixture(scope="module")
def versions() -> dict[str, str]:
    """Three versions of NAME, the middle one in production; one of another name with
    none in production."""
    return {
        "old": _save(NAME, stage=store.ARCHIVED),
        "production": _save(NAME, stage=store.PRODUCTION),
        "newest": _save(NAME, stage=store.STAGING),
        "unpromoted": _save(f"{NAME}-b"),
    }


def _same(found: store.Stored, model: bentoml.Model) -> None:
    assert found.tag == str(model.tag)
    assert found.path == str(model.path)
    assert found.info.labels == dict(model.info.labels)
    assert found.info.metadata == dict(model.info.metadata)
    assert found.info.creation_time == model.info.creation_time


def test_each_version_reads_as_bentoml_reads_it(versions: dict[str, str]) -> None:
    for tag in versions.values():
        _same(store.find(tag), bentoml.models.get(tag))


def test_a_name_means_its_production_version_else_the_newest(versions: dict[str, str]) -> None:
    assert store.find(NAME).tag == versions["production"]
    assert store.find(f"{NAME}:latest").tag == versions["production"]
    assert str(store.resolve(NAME).tag) == versions["production"]
    assert str(store.production_model(NAME).tag) == versions["production"]  # type: ignore[union-attr]
    unpromoted = f"{NAME}-b"
    assert store.production_model(unpromoted) is None
    assert store.find(unpromoted).tag == str(bentoml.models.get(f"{unpromoted}:latest").tag)


def test_version_prefixes_and_missing_models(versions: dict[str, str]) -> None:
    tag = versions["old"]
    assert store.find(tag[: len(NAME) + 1 + 6]).tag == tag  # a unique prefix, as BentoML
    for missing in ("no-such-model", f"{NAME}:zzzzzz"):
        with pytest.raises(store.StoreError, match="is not in the model store"):
            store.find(missing)
    assert store.production_model("no-such-model") is None


def test_without_the_store_folder_bentoml_reads_it(
    versions: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store, "_store_dir", lambda: None)
    assert store.find(NAME).tag == versions["production"]
    _same(store.find(versions["newest"]), bentoml.models.get(versions["newest"]))
    assert store.find(f"{NAME}-b").tag == versions["unpromoted"]


def test_the_fast_reading_is_in_use() -> None:
    """If a BentoML upgrade moves the store's folder, or PyYAML lost libyaml, the
    service would still start correctly but ~0.3 s slower: fail here instead."""
    assert store._store_dir() is not None
    if yaml.__with_libyaml__:
        assert store._LOADER is yaml.CSafeLoader


def test_importing_the_service_package_freezes_what_is_loaded() -> None:
    script = "import gc, bentoml; n = gc.get_freeze_count(); import service; "
    script += "print(n, gc.get_freeze_count())"
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    before, after = map(int, out.stdout.split())
    assert after > before
