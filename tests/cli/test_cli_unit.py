"""The CLI's help and its handling of malformed settings, in process (no server)."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from modelport.cli import app

pytestmark = pytest.mark.unit

COMMANDS = sorted(typer.main.get_command(app).commands)  # type: ignore[attr-defined]


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_boolean_options_show_as_flags(command: str | None) -> None:
    args = ["--help"] if command is None else [command, "--help"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "--help" in result.output
    assert "<bool>" not in result.output and "BOOLEAN" not in result.output, result.output


def test_known_flags_are_listed() -> None:
    runner = CliRunner()
    assert "--force" in runner.invoke(app, ["train", "--help"]).output
    assert "--once" in runner.invoke(app, ["demo", "--help"]).output
    assert "--no-pull" in runner.invoke(app, ["build", "--help"]).output


BAD = [
    (
        "MODELPORT_GATE_MIN_METRICS",
        "{accuracy:0.9",
        "not valid JSON (Expecting property name enclosed in double quotes: line 1 column 2 "
        '(char 1)); expected JSON like \'{"accuracy": 0.7',
    ),
    ("MODELPORT_SEED", "abc", "expected a valid integer"),
    ("MODELPORT_TEST_SIZE", "0.9", "expected less than 0.5"),
    ("MODELPORT_KERAS_ARTIFACT", "fast", "expected 'auto', 'keras', 'saved_model' or 'tflite'"),
    ("MODELPORT_MAX_BATCH_ROWS", "many", "expected a valid integer"),
    ("MODELPORT_GATE_MIN_METRICS", '{"accuracy": "high"}', "accuracy: expected a valid number"),
]


@pytest.mark.parametrize(("variable", "value", "expected"), BAD)
@pytest.mark.parametrize("command", COMMANDS)
def test_malformed_setting_is_one_line_for_every_command(
    command: str, variable: str, value: str, expected: str
) -> None:
    # No arguments: the check comes before any command parses its own, or runs.
    result = CliRunner().invoke(app, [command], env={variable: value})
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2, result.output
    assert len(lines) == 1, result.output
    assert lines[0].startswith(f"error: {variable}={value!r}: "), lines[0]
    assert expected in lines[0]


def test_help_works_with_a_malformed_setting() -> None:
    result = CliRunner().invoke(app, ["train", "--help"], env={"MODELPORT_SEED": "abc"})
    assert result.exit_code == 0 and "--force" in result.output
