"""`modelport models` and `modelport config` keep tags and variable names whole, at any
terminal width, and offer JSON."""

from __future__ import annotations

import io
import json
import re

import pytest
from rich.console import Console
from typer.testing import CliRunner

from modelport import cli
from modelport.cli import app
from modelport.settings_check import settings_classes, variable

WIDTHS = [80, 120, 50]  # 50: too narrow for a table with whole tags, one block a model


def _render(monkeypatch: pytest.MonkeyPatch, width: int, args: list[str]) -> str:
    # The console a terminal of this width would give (rich reads COLUMNS only at start).
    screen = io.StringIO()
    monkeypatch.setattr(cli, "out", Console(file=screen, width=width, color_system=None))
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    text = screen.getvalue()
    assert all(len(line) <= width for line in text.splitlines()), text
    return text


def _whole(word: str, text: str) -> bool:
    return re.search(rf"(?<![\w.:-]){re.escape(word)}(?![\w.:-])", text) is not None


@pytest.mark.integration
@pytest.mark.parametrize("width", WIDTHS)
def test_models_keeps_tags_whole(
    trained: dict[str, object], monkeypatch: pytest.MonkeyPatch, width: int
) -> None:
    import bentoml

    tags = [str(m.tag) for m in bentoml.models.list()]
    assert any(t.startswith("breast-cancer-keras:") for t in tags)
    text = _render(monkeypatch, width, ["models"])
    for tag in tags:
        assert _whole(tag, text), (tag, text)


@pytest.mark.integration
def test_models_as_json(trained: dict[str, object]) -> None:
    import bentoml

    result = CliRunner().invoke(app, ["models", "--output", "json"])
    assert result.exit_code == 0, result.output
    listed = json.loads(result.stdout)
    assert {m["tag"] for m in listed} == {str(m.tag) for m in bentoml.models.list()}
    keras = next(m for m in listed if m["name"] == "breast-cancer-keras")
    assert keras["framework"] == "keras" and keras["stage"] == "production"
    assert set(keras["metrics"]) == {"accuracy", "roc_auc", "f1"}
    assert keras["tag"] == f"{keras['name']}:{keras['version']}"


@pytest.mark.unit
@pytest.mark.parametrize("width", WIDTHS)
def test_config_keeps_variable_names_whole(monkeypatch: pytest.MonkeyPatch, width: int) -> None:
    text = _render(monkeypatch, width, ["config"])
    names = [variable(cls, f) for cls in settings_classes() for f in cls.model_fields]
    assert "MODELPORT_GATE_MIN_METRICS" in names and "MODELPORT_MODELS" in names
    for name in names:
        assert _whole(name, text), (name, text)
    for cls in settings_classes():
        assert str(cls.__doc__).split()[0] in text


@pytest.mark.unit
def test_config_lists_every_settings_class_as_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELPORT_GATE_MIN_METRICS", '{"accuracy": 0.91}')
    result = CliRunner().invoke(app, ["config", "-o", "json"])
    assert result.exit_code == 0, result.output
    groups = {g["settings"]: g for g in json.loads(result.stdout)}
    from modelport import settings

    # Every BaseSettings class of modelport.settings, found independently of the CLI.
    expected = {
        name
        for name, obj in vars(settings).items()
        if isinstance(obj, type)
        and issubclass(obj, settings.BaseSettings)
        and obj.__module__ == settings.__name__
    }
    assert set(groups) == expected and {"TrainingSettings", "ServiceSettings"} <= expected
    training = {v["variable"]: v for v in groups["TrainingSettings"]["variables"]}
    assert training["MODELPORT_GATE_MIN_METRICS"]["value"] == {"accuracy": 0.91}
    assert training["MODELPORT_SEED"]["description"]
