"""Settings: flags > IMAGELINGO_<KEY> > settings file > default, validated on the way in."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from conftest import Cli

from imagelingo_cli.settings import DEFAULT_MODEL, resolve, settings_path


def shown(cli: Cli, env: dict[str, str] | None = None) -> dict[str, Any]:
    result = cli("settings", "show", "--json", env=env)
    assert result.exit_code == 0, result.output
    data: dict[str, Any] = json.loads(result.output)
    return data


def test_defaults_when_nothing_is_set(cli: Cli) -> None:
    """No file, no environment: built-in defaults, each marked 'default', and the file's path."""
    data = shown(cli)
    assert data["path"] == str(settings_path())
    assert {k: (v["value"], v["source"]) for k, v in data["settings"].items()} == {
        "language": (["en"], "default"),
        "model": (DEFAULT_MODEL, "default"),
        "concurrency": (4, "default"),
        "auto_retry": (True, "default"),
        "auto_retry_codes": (["RATE_LIMIT", "TIMEOUT"], "default"),
        "max_retries": (2, "default"),
        "max_wait": (60.0, "default"),
        "timeout": (120.0, "default"),
        "out": ("imagelingo-out", "default"),
        "confirm_above": (100, "default"),
        "rpm": (None, "default"),
        "batch_poll": (5.0, "default"),
        "batch_max_mb": (2000.0, "default"),
    }


def test_flag_beats_environment_beats_file_beats_default(cli: Cli) -> None:
    """resolve(): each key from the first place that sets it."""
    assert cli("settings", "set", "language", "Spanish").exit_code == 0
    assert cli("settings", "set", "concurrency", "8").exit_code == 0
    env = {"IMAGELINGO_CONCURRENCY": "16", "IMAGELINGO_MODEL": "gemini-3-pro-image-preview"}
    got = resolve({"concurrency": 2}, environ=env)
    assert (got.language, got.sources["language"]) == (("es",), "settings file")
    assert (got.concurrency, got.sources["concurrency"]) == (2, "flag")
    assert (got.model, got.sources["model"]) == ("gemini-3-pro-image-preview", "environment")
    assert resolve(environ=env).concurrency == 16
    assert (resolve(environ={}).concurrency, resolve(environ={}).auto_retry) == (8, True)
    data = shown(cli, env=env)["settings"]
    assert (data["concurrency"]["value"], data["concurrency"]["source"]) == (16, "environment")
    assert (data["language"]["value"], data["language"]["source"]) == (["es"], "settings file")


def test_set_writes_a_private_toml_file(cli: Cli) -> None:
    """settings set creates the file with mode 0600 and show reads it back."""
    result = cli("settings", "set", "auto_retry_codes", "rate_limit,server_error")
    assert result.exit_code == 0, result.output
    path = settings_path()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert 'auto_retry_codes = [\n    "RATE_LIMIT",\n    "SERVER_ERROR",\n]' in path.read_text()
    assert shown(cli)["settings"]["auto_retry_codes"]["value"] == ["RATE_LIMIT", "SERVER_ERROR"]
    assert cli("settings", "set", "auto_retry", "off").exit_code == 0
    assert shown(cli)["settings"]["auto_retry"] == {
        "value": False,
        "source": "settings file",
        "environment_variable": "IMAGELINGO_AUTO_RETRY",
    }


@pytest.mark.parametrize(
    ("key", "value", "says"),
    [
        ("language", "notalanguage", "unknown language"),
        ("concurrency", "0", "out of range"),
        ("concurrency", "many", "not a whole number"),
        ("colour", "blue", "valid: language, model, concurrency, auto_retry, auto_retry_codes"),
        ("auto_retry_codes", "CONFIG_ERROR", "cannot be auto-retried (valid: API_ERROR"),
        ("auto_retry_codes", "RATE_LIMIT,BOGUS", "'BOGUS' cannot be auto-retried"),
        ("auto_retry", "maybe", "not on/off"),
        ("rpm", "0", "out of range"),
        ("rpm", "fast", "not a number of requests per minute"),
    ],
)
def test_invalid_values_are_refused(cli: Cli, key: str, value: str, says: str) -> None:
    """A bad value exits 2 with the valid choices, and the file is left untouched."""
    result = cli("settings", "set", key, value)
    assert result.exit_code == 2
    assert says in " ".join(result.output.split())
    assert not settings_path().exists()


def test_invalid_environment_value_is_a_setup_error(cli: Cli) -> None:
    """IMAGELINGO_CONCURRENCY=zero makes settings show exit 2 naming the variable."""
    result = cli("settings", "show", env={"IMAGELINGO_CONCURRENCY": "zero"})
    assert result.exit_code == 2 and "IMAGELINGO_CONCURRENCY" in result.output


def test_path_and_table(cli: Cli, tmp_path: Path) -> None:
    """settings path prints IMAGELINGO_CONFIG's file; settings show prints a table and the path."""
    assert cli("settings", "path").output.strip() == str(tmp_path / "state" / "settings.toml")
    text = cli("settings", "show", env={"COLUMNS": "200"}).output
    assert "concurrency" in text and "default" in text and "settings.toml" in text


def test_rpm_from_the_file_or_the_environment_caps_the_pace(cli: Cli) -> None:
    """settings set rpm 30 makes 30/min the default; IMAGELINGO_RPM and --rpm win over it."""
    assert cli("settings", "set", "rpm", "30").exit_code == 0
    assert (resolve(environ={}).rpm, resolve(environ={}).sources["rpm"]) == (30.0, "settings file")
    assert resolve(environ={"IMAGELINGO_RPM": "12.5"}).rpm == 12.5
    assert resolve({"rpm": 6}, environ={"IMAGELINGO_RPM": "12.5"}).rpm == 6.0
    assert "rpm = 30.0" in settings_path().read_text()
