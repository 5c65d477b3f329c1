"""User defaults, resolved in one place: flags > environment > settings file > built-in.

The settings file is TOML in the user config directory (`imagelingo settings show` prints
its path); `IMAGELINGO_CONFIG` points elsewhere. Environment variables are IMAGELINGO_<KEY>.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imagelingo_cli.errors import DEFAULT_AUTO_RETRY, ErrorCode, SetupError
from imagelingo_cli.languages import resolve_languages
from imagelingo_cli.limits import MAX_CONCURRENCY, MAX_RETRIES

DEFAULT_MODEL = "gemini-2.5-flash-image"  # GA image model; see the README for why
BATCH_MAX_MB = 2000.0  # the Batch API takes input files up to 2 GB


def settings_path() -> Path:
    override = os.environ.get("IMAGELINGO_CONFIG")
    if override:
        return Path(override).expanduser()
    import platformdirs

    return Path(platformdirs.user_config_dir("imagelingo")) / "settings.toml"


def _languages(value: str) -> tuple[str, ...]:
    return tuple(language.tag for language in resolve_languages([value]))


def _model(value: str) -> str:
    value = value.strip().removeprefix("models/")
    if not value or any(c.isspace() or c in "/?#:" for c in value):
        raise ValueError(f"{value!r} is not a model name (expected e.g. {DEFAULT_MODEL})")
    return value


def _whole(low: int, high: int | None = None) -> Callable[[str], int]:
    """A parser of whole numbers from `low` to `high` (no upper bound: None)."""

    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise ValueError(f"{value!r} is not a whole number") from None
        if number < low or (high is not None and number > high):
            bounds = f"{low} to {high}" if high is not None else f"{low} or more"
            raise ValueError(f"{number} is out of range ({bounds})")
        return number

    return parse


def _seconds(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a number of seconds") from None
    if not number >= 0 or number == float("inf"):
        raise ValueError(f"{value!r} is not a number of seconds")
    return number


def _megabytes(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a number of megabytes") from None
    if not 0 < number <= BATCH_MAX_MB:
        raise ValueError(f"{value!r} is out of range (more than 0, at most {BATCH_MAX_MB:g})")
    return number


def _interval(value: str) -> float:
    number = _seconds(value)
    if number == 0:
        raise ValueError("0 seconds: polls need some time between them")
    return number


def _path(value: str) -> str:
    if not value.strip():
        raise ValueError("an empty path")
    return value


def _rate(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a number of requests per minute") from None
    if not 0 < number <= 100_000:
        raise ValueError(f"{value} is out of range (more than 0, at most 100000)")
    return number


def _boolean(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{value!r} is not on/off (valid: true, false, on, off, yes, no, 1, 0)")


def _codes(value: str) -> tuple[str, ...]:
    names = [part.strip().upper() for part in value.replace(" ", ",").split(",") if part.strip()]
    transient = sorted(code.value for code in ErrorCode if code.can_be_transient)
    for name in names:
        if name not in transient:
            raise ValueError(f"{name!r} cannot be auto-retried (valid: {', '.join(transient)})")
    return tuple(sorted(set(names)))


@dataclass(frozen=True)
class _Key:
    parse: Callable[[str], Any]
    default: Any
    help: str
    flag: str  # the command-line option that sets it for one run


KEYS: Mapping[str, _Key] = {
    "language": _Key(_languages, ("en",), "target languages (comma-separated)", "--to"),
    "model": _Key(_model, DEFAULT_MODEL, "Gemini image model", "--model"),
    "concurrency": _Key(
        _whole(1, MAX_CONCURRENCY), 4, "requests in flight at most", "--concurrency"
    ),
    "auto_retry": _Key(
        _boolean, True, "retry transient failures automatically", "--auto-retry/--no-auto-retry"
    ),
    "auto_retry_codes": _Key(
        _codes,
        tuple(sorted(c.value for c in DEFAULT_AUTO_RETRY)),
        "codes retried automatically",
        "--auto-retry-on",
    ),
    "max_retries": _Key(
        _whole(0, MAX_RETRIES), 2, "automatic retries per variation", "--max-retries"
    ),
    "max_wait": _Key(_seconds, 60.0, "longest server-asked wait, in seconds", "--max-wait"),
    "timeout": _Key(_seconds, 120.0, "deadline of one attempt, in seconds", "--timeout"),
    "out": _Key(_path, "imagelingo-out", "folder for the translated images", "--out"),
    "confirm_above": _Key(
        _whole(0), 100, "ask on a terminal before sending more requests than this", "--yes"
    ),
    "rpm": _Key(
        _rate, None, "requests per minute at most; unset: learned from the server", "--rpm"
    ),
    "batch_poll": _Key(
        _interval,
        5.0,
        "seconds before a batch job's first poll (polls back off to 5 min)",
        "--batch",
    ),
    "batch_max_mb": _Key(
        _megabytes,
        BATCH_MAX_MB,
        "largest batch job input in MB (more makes more jobs)",
        "--batch",
    ),
}


@dataclass(frozen=True)
class Settings:
    language: tuple[str, ...]  # the target languages
    model: str
    concurrency: int
    auto_retry: bool
    auto_retry_codes: tuple[str, ...]
    max_retries: int
    max_wait: float
    timeout: float
    out: str
    confirm_above: int
    rpm: float | None
    batch_poll: float
    batch_max_mb: float
    sources: Mapping[str, str]  # key -> "flag", "environment", "settings file", "default"


def read_file(path: Path | None = None) -> dict[str, Any]:
    path = path or settings_path()
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        return {}
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise SetupError(f"cannot read the settings file {path}: {exc}") from None


def resolve(
    flags: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Each key from the first place that sets it: flags, IMAGELINGO_<KEY>, the file, default."""
    flags = flags or {}
    environ = os.environ if environ is None else environ
    stored = read_file()
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for name, key in KEYS.items():
        env_name = f"IMAGELINGO_{name.upper()}"
        if flags.get(name) is not None:
            raw, source = flags[name], "flag"
        elif environ.get(env_name):
            raw, source = environ[env_name], "environment"
        elif name in stored:
            raw, source = stored[name], "settings file"
        else:
            values[name], sources[name] = key.default, "default"
            continue
        text = ",".join(raw) if isinstance(raw, list | tuple) else str(raw)
        try:
            values[name] = key.parse(text)
        except ValueError as exc:
            where = {
                "flag": key.flag,
                "environment": env_name,
                "settings file": f"the settings file {settings_path()}",
            }
            raise SetupError(f"invalid {where[source]}: {exc}") from None
        sources[name] = source
    return Settings(sources=sources, **values)


def shown(value: Any) -> str:
    """A setting's value as the user writes it: on/off, comma-separated codes."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, tuple | list):
        return ",".join(str(v) for v in value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def defaults_in_effect(environ: Mapping[str, str] | None = None) -> dict[str, tuple[str, str]]:
    """Each key's value as it stands before any flag, and where it comes from, unparsed
    (cheap enough for --help)."""
    environ = os.environ if environ is None else environ
    try:
        stored = read_file()
    except SetupError:
        stored = {}
    found = {}
    for name, key in KEYS.items():
        env_name = f"IMAGELINGO_{name.upper()}"
        if environ.get(env_name):
            found[name] = (environ[env_name], env_name)
        elif name in stored:
            found[name] = (shown(stored[name]), "settings file")
        else:
            found[name] = (shown(key.default), "built-in")
    return found


def set_value(name: str, text: str) -> Any:
    """Validate and store one setting; returns the stored value. ValueError lists valid keys."""
    if name not in KEYS:
        raise ValueError(f"unknown setting {name!r} (valid: {', '.join(KEYS)})")
    value = KEYS[name].parse(text)
    path = settings_path()
    stored = read_file(path)
    stored[name] = list(value) if isinstance(value, tuple) else value
    _write(path, stored)
    return value


def unset_value(name: str) -> bool:
    """Remove one setting from the file (back to its default); whether it was set."""
    if name not in KEYS:
        raise ValueError(f"unknown setting {name!r} (valid: {', '.join(KEYS)})")
    path = settings_path()
    stored = read_file(path)
    if name not in stored:
        return False
    del stored[name]
    _write(path, stored)
    return True


def _write(path: Path, stored: Mapping[str, Any]) -> None:
    """The whole file under a temporary name, renamed into place (readable by its owner only):
    a crash leaves the old file or the new one, never half of one."""
    import tomli_w

    from imagelingo_cli.outputs import write_atomic

    write_atomic(path, tomli_w.dumps(dict(stored)).encode(), mode=0o600)
