"""Every settings class in :mod:`modelport.settings`, and a malformed ``MODELPORT_*`` value
told as one line naming the variable, its value and what is expected (never a traceback)."""

from __future__ import annotations

import json
import os
import re
from typing import Any

from pydantic import ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings
from pydantic_settings.exceptions import SettingsError


class SettingsValueError(ValueError):
    """A ``MODELPORT_*`` value (environment or ``.env``) that cannot be used."""


def settings_classes() -> list[type[BaseSettings]]:
    """The settings classes defined in modelport.settings, in definition order (found,
    not listed, so a new class shows up in ``modelport config`` by itself)."""
    from modelport import settings

    return [
        obj
        for obj in vars(settings).values()
        if isinstance(obj, type)
        and issubclass(obj, BaseSettings)
        and obj.__module__ == settings.__name__
    ]


def check_all() -> None:
    """Read every settings class once; raise SettingsValueError for the first bad one."""
    for cls in settings_classes():
        try:
            cls()
        except (ValidationError, SettingsError) as exc:
            line = describe(exc)
            if line is None:
                raise
            raise SettingsValueError(line) from None


def variable(cls: type[BaseSettings], name: str) -> str:
    """The environment variable that sets field ``name`` of ``cls``."""
    alias = cls.model_fields[name].validation_alias
    if isinstance(alias, str):
        return alias.upper()
    return f"{cls.model_config.get('env_prefix', '')}{name}".upper()


def describe(exc: Exception) -> str | None:
    """One line for a settings error raised by a class of modelport.settings; None when
    the error did not come from one (the caller re-raises it)."""
    classes = settings_classes()
    if isinstance(exc, ValidationError):
        cls = next((c for c in classes if c.__name__ == exc.title), None)
        if cls is None:
            return None
        parts: dict[str, str] = {}
        for error in exc.errors():
            loc = error.get("loc") or ()
            name = str(loc[0]) if loc else ""
            if name not in cls.model_fields or name in parts:
                continue
            inner = ".".join(str(x) for x in loc[1:])  # e.g. a dict's key
            expected = (f"{inner}: " if inner else "") + _expected(error["msg"])
            parts[name] = _problem(cls, name, error.get("input"), expected)
        return "; ".join(parts.values()) or None
    if isinstance(exc, SettingsError):
        match = re.search(r'field "([^"]+)"', str(exc))
        if match is None:
            return None
        name = match.group(1)
        cls = next((c for c in classes if name in c.model_fields), None)
        if cls is None:
            return None
        cause = exc.__cause__
        why = f"not valid JSON ({cause})" if isinstance(cause, ValueError) else str(exc)
        return _problem(cls, name, None, f"{why}; expected {_json_example(cls.model_fields[name])}")
    return None


def _problem(cls: type[BaseSettings], name: str, given: Any, expected: str) -> str:
    var = variable(cls, name)
    raw = _raw_value(cls, var)
    value = raw if raw is not None else given
    return f"{var}={str(value)!r}: {expected}"


def _expected(message: str) -> str:
    # pydantic says "Input should be a valid integer, ..."; the user needs the expectation.
    head = "Input should be "
    return f"expected {message[len(head) :]}" if message.startswith(head) else message


def _json_example(info: FieldInfo) -> str:
    try:
        default = info.get_default(call_default_factory=True)
        return f"JSON like '{json.dumps(default)}'"
    except (TypeError, ValueError):
        return "JSON"


def _raw_value(cls: type[BaseSettings], var: str) -> str | None:
    """The value as the user wrote it: the environment first (names are matched without
    case, as pydantic-settings does), then the class's .env file."""
    for key, value in os.environ.items():
        if key.upper() == var:
            return value
    env_file = cls.model_config.get("env_file")
    if isinstance(env_file, (str, os.PathLike)) and os.path.isfile(env_file):
        from dotenv import dotenv_values

        for key, found in dotenv_values(env_file).items():
            if key.upper() == var:
                return found
    return None
