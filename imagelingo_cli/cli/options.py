"""Options that several commands share, written once, and what their help shows: each
option's metavar in words, and for options a setting defaults, the value in effect now and
where it comes from (`settings.defaults_in_effect`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer

from imagelingo_cli.cli.params import PlainCommand

if TYPE_CHECKING:
    from imagelingo_cli.retry import RetryPolicy
    from imagelingo_cli.settings import Settings

MODEL = typer.Option(None, "--model", metavar="MODEL", help="Gemini image model.")
CONCURRENCY = typer.Option(
    None, "--concurrency", "-c", metavar="N", help="Requests in flight at most."
)
MAX_RETRIES = typer.Option(
    None, "--max-retries", metavar="N", help="Automatic retries per variation (transient errors)."
)
AUTO_RETRY = typer.Option(
    None, "--auto-retry/--no-auto-retry", help="Retry transient errors automatically."
)
AUTO_RETRY_ON = typer.Option(
    None,
    "--auto-retry-on",
    metavar="CODE",
    help="Error code to retry automatically (repeatable).",
)
MAX_WAIT = typer.Option(
    None,
    "--max-wait",
    metavar="SECONDS",
    help="Longest server-requested wait before giving up as QUOTA_EXHAUSTED.",
)
TIMEOUT = typer.Option(
    None, "--timeout", metavar="SECONDS", help="Deadline for one attempt, in total."
)
RPM = typer.Option(
    None,
    "--rpm",
    metavar="N",
    help="Send at most N requests a minute (unset: paced to the quota the server states).",
)
BASE_URL = typer.Option(
    None,
    "--base-url",
    metavar="URL",
    envvar="GOOGLE_GEMINI_BASE_URL",
    help="Send requests to this Gemini-compatible address (a proxy, the simulator).",
)
DB = typer.Option(
    None,
    "--db",
    metavar="FILE",
    help="Database file (default: IMAGELINGO_DB, else the user data folder).",
)
YES = typer.Option(
    False, "--yes", "-y", help="Do not ask before a large run (see settings confirm_above)."
)
JSON_LINES = typer.Option(
    False, "--json", help="JSON lines on stdout: one object per event, nothing else."
)
NO_WAIT = typer.Option(
    False, "--no-wait", help="With --batch: return once submitted (imagelingo batch collect)."
)
CODES = typer.Option(None, "--code", metavar="CODE", help="Only this error code (repeatable).")
LANGUAGES = typer.Option(
    None,
    "--to",
    metavar="LANG",
    help="Only these target languages (comma-separated or repeated).",
)
RUN = typer.Option(None, "--run", metavar="RUN", help="Only this run (id or unique prefix).")

# Option (parameter name) -> the setting that gives its default.
SETTING_OF = {
    "to": "language",
    "model": "model",
    "concurrency": "concurrency",
    "out": "out",
    "max_retries": "max_retries",
    "auto_retry": "auto_retry",
    "auto_retry_on": "auto_retry_codes",
    "max_wait": "max_wait",
    "timeout": "timeout",
    "rpm": "rpm",
}


class PlainHelp(PlainCommand):
    """Help in words: arguments by their metavar (`PATH...`, `[ID]...`), never a Python type."""

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if param.param_type_name == "argument":
                pieces.append(_argument_name(param))
        return pieces

    def format_options(self, ctx: Any, formatter: Any) -> None:
        arguments, options = [], []
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None:
                continue
            if param.param_type_name == "argument":
                required = "  [required]" if param.required else ""
                arguments.append((_argument_name(param), f"{getattr(param, 'help', '')}{required}"))
            elif param.param_type_name == "option":
                options.append(record)
        for title, rows in (("Arguments", arguments), ("Options", options)):
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)


def _argument_name(param: Any) -> str:
    name = param.metavar or str(param.name).upper()
    if param.nargs != 1 and not name.endswith("..."):
        name += "..."
    return name if param.required else f"[{name}]"


class SettingsDefaults(PlainHelp):
    """A command whose --help shows, for each option a setting defaults, the value in effect
    now and where it comes from: `[default: (es, settings file)]`."""

    def format_help(self, ctx: Any, formatter: Any) -> None:
        from imagelingo_cli.settings import defaults_in_effect

        effective = defaults_in_effect()
        for param in self.params:
            setting = SETTING_OF.get(param.name or "")
            if setting is not None and hasattr(param, "show_default"):
                value, source = effective[setting]
                param.show_default = f"{value}, {source}"
        super().format_help(ctx, formatter)


def policy_flags(
    *,
    max_retries: int | None,
    auto_retry: bool | None,
    auto_retry_on: list[str] | None,
    max_wait: float | None,
    timeout: float | None,
) -> dict[str, Any]:
    """The policy options as `settings.resolve` flags (None: not given)."""
    return {
        "max_retries": max_retries,
        "auto_retry": auto_retry,
        "auto_retry_codes": auto_retry_on or None,
        "max_wait": max_wait,
        "timeout": timeout,
    }


def policy_from(settings: Settings) -> RetryPolicy:
    from imagelingo_cli.errors import ErrorCode
    from imagelingo_cli.retry import RetryPolicy

    return RetryPolicy(
        max_retries=settings.max_retries,
        auto_retry=settings.auto_retry,
        auto_retry_codes=frozenset(ErrorCode(c) for c in settings.auto_retry_codes),
        max_wait=settings.max_wait,
    )
